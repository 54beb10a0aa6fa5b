/** Small file helpers shared by the format readers and writers (safetensors, GGUF, llama2.c, resume state, spilled activations). */
import * as fs from 'node:fs';
import { LowbitError, toLowbitError } from '../errors';

/** Open for reading; a missing file is LOWBIT_NOT_FOUND naming it, other failures LOWBIT_IO. */
export function openForRead(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new LowbitError('LOWBIT_NOT_FOUND', `${file}: no such file`, { file }, { cause: e });
    }
    throw toLowbitError(e, file);
  }
}

/** Read exactly buf.length bytes at `position` (in pieces of at most 1 GiB); EOF is LOWBIT_IO. */
export function readFully(fd: number, buf: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < buf.length) {
    const want = Math.min(buf.length - done, 1 << 30);
    const got = fs.readSync(fd, buf, done, want, position + done);
    if (got === 0) {
      throw new LowbitError('LOWBIT_IO', `${file}: unexpected end of file reading ${buf.length} bytes at offset ${position} (the file shrank after it was opened?)`, { file });
    }
    done += got;
  }
}

/** Write all of `bytes` at `position` (in pieces of at most 1 GiB). */
export async function writeAllAt(fh: fs.promises.FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.byteLength - done, 1 << 30), position + done);
    done += bytesWritten;
  }
}

/** Fill `buf` from `position` (in pieces of at most 1 GiB); the end of the file first is an Error (callers name the file). */
export async function readAllAt(fh: fs.promises.FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesRead } = await fh.read(buf, done, Math.min(buf.byteLength - done, 1 << 30), position + done);
    if (bytesRead === 0) throw new Error(`short read at ${position + done}`);
    done += bytesRead;
  }
}
