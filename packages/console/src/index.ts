export {
  type CaptureSource,
  ConsoleCapture,
  type ConsoleCaptureOptions,
  type ConsoleCaptureStats,
  type ConsoleEventName,
  type ConsoleEvents,
  type GuestRebootKind,
  type WaitForLineOptions,
} from './console-capture.js';
export {
  type ConsoleLogFilesOptions,
  type ConsolePrimitive,
  type ConsolePrimitiveOptions,
  type ConsoleSource,
  consoleFifoName,
  consolePrimitive,
  firecrackerLogLinePattern,
  type VmConsole,
} from './console-primitive.js';
export { createFifo, FifoReader } from './fifo.js';
export {
  droppedLinesMarker,
  type FollowOptions,
  LineBuffer,
  type LineBufferOptions,
  type LineBufferStats,
} from './line-buffer.js';
export { cutLineMarker, LineSplitter, type LineSplitterOptions, utf8Prefix } from './line-splitter.js';
export {
  type BufferOptions,
  defaultLogFileMaxBytes,
  defaultLogFileMaxFiles,
  defaultMaxBytes,
  defaultMaxLineBytes,
  defaultMaxLines,
  type LogFileOptions,
} from './options.js';
export { droppedWritesMarker, RotatingLogFile, type RotatingLogFileOptions } from './rotating-log-file.js';
