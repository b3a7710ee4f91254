/**
 * Logging: JSON lines through pino (one object per line, `level`, `time`, `msg`),
 * on stderr so stdout stays for what a person asked for (the banner, `ipam` output).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export function createLogger(level: LogLevel = 'info', dest: number = 2): Logger {
  return pino({ level, base: { name: 'clusterdns' } }, pino.destination({ fd: dest, sync: true }));
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** The small interface sources log through (so they do not depend on pino). */
export interface SourceLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function sourceLog(log: Logger): SourceLog {
  return {
    info: (msg, fields) => log.info(fields ?? {}, msg),
    warn: (msg, fields) => log.warn(fields ?? {}, msg),
    error: (msg, fields) => log.error(fields ?? {}, msg),
  };
}
