/**
 * Checks of the files a VMM config names (BIOS and option ROM images, disk
 * images, multiboot kernels), with one-line reasons for the user.
 */
import { accessSync, closeSync, constants as fsConstants, openSync, readSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { isRecord } from '../../common/yaml-schema-errors.js';

/**
 * The BIOS image `firmware: bios` boots: SeaBIOS as Debian's `seabios`
 * package installs it (the 256 KiB build, with the PCI, ACPI and SMBIOS
 * support the 128 KiB one lacks).
 */
export const DEFAULT_BIOS_PATH = '/usr/share/seabios/bios-256k.bin';

/** BIOS image sizes: a multiple of 64 KiB, 64 KiB .. 16 MiB (the flash window below 4 GiB). */
export const BIOS_SIZE = { min: 64 * 1024, max: 16 * 1024 * 1024, align: 64 * 1024 } as const;

/** Legacy option ROM sizes: 512 bytes .. 128 KiB (the 0xC0000-0xDFFFF expansion area is shared). */
export const OPTION_ROM_SIZE = { min: 512, max: 128 * 1024 } as const;

export function fileErrorReason(e: unknown): string {
  const code = isRecord(e) ? e.code : undefined;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return e instanceof Error ? e.message : String(e);
}

/** Why a file cannot be read, or undefined if it can. */
export function unreadable(path: string): string | undefined {
  try {
    const st = statSync(path);
    if (st.isDirectory()) return 'is a directory';
    if (!st.isFile()) return 'not a regular file';
    accessSync(path, fsConstants.R_OK);
    return undefined;
  } catch (e) {
    return fileErrorReason(e);
  }
}

/** The size of a readable regular file, or why it cannot be read. */
export function readableFile(path: string): { size: number; problem?: undefined } | { problem: string } {
  const why = unreadable(path);
  return why !== undefined ? { problem: `${path}: ${why}` } : { size: statSync(path).size };
}

/** The first `n` bytes of a file (fewer if it is shorter). */
export function readHead(path: string, n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = openSync(path, 'r');
  try {
    return buf.subarray(0, readSync(fd, buf, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** Why `path` is not a usable BIOS image, or undefined. */
export function biosImageProblem(path: string): string | undefined {
  const f = readableFile(path);
  if (f.problem !== undefined) return f.problem;
  const { min, max, align } = BIOS_SIZE;
  if (f.size < min || f.size > max || f.size % align !== 0) {
    return `${path}: ${f.size} bytes is not a BIOS image size (a multiple of 64 KiB, 64 KiB .. 16 MiB)`;
  }
  return undefined;
}

/** Why `path` is not a usable legacy option ROM, or undefined. */
export function optionRomProblem(path: string): string | undefined {
  const f = readableFile(path);
  if (f.problem !== undefined) return f.problem;
  if (f.size < OPTION_ROM_SIZE.min)
    return `${path}: ${f.size} bytes is too small for an option ROM (at least 512)`;
  if (f.size > OPTION_ROM_SIZE.max)
    return `${path}: ${f.size} bytes is too large for an option ROM (at most 128 KiB)`;
  let head: Buffer;
  try {
    head = readHead(path, 2);
  } catch (e) {
    return `${path}: ${fileErrorReason(e)}`;
  }
  // PCI Firmware Specification 3.0, 5.1.1: every expansion ROM image starts with 0x55 0xAA.
  if (head[0] !== 0x55 || head[1] !== 0xaa) {
    return `${path}: not an option ROM (it does not start with the signature 0x55 0xAA)`;
  }
  return undefined;
}

/** The qcow2 magic "QFI\xfb" (QEMU docs/interop/qcow2.txt, header bytes 0-3). */
const QCOW2_MAGIC = 0x514649fb;

/**
 * Why `path` cannot be the image of a storage device, or undefined: it must
 * be a readable regular file, writable when the device writes it (`hint`
 * says how not to), and start with the qcow2 magic when `format` is qcow2.
 */
export function diskImageProblem(
  path: string,
  opts: { writable: boolean; format?: 'raw' | 'qcow2'; hint?: string },
): string | undefined {
  const why = unreadable(path);
  if (why !== undefined) return `${path}: ${why}`;
  if (opts.writable) {
    try {
      accessSync(path, fsConstants.W_OK);
    } catch (e) {
      return `${path}: cannot be written (${fileErrorReason(e)})${opts.hint !== undefined ? `; ${opts.hint}` : ''}`;
    }
  }
  if (opts.format === 'qcow2') {
    let head: Buffer;
    try {
      head = readHead(path, 4);
    } catch (e) {
      return `${path}: ${fileErrorReason(e)}`;
    }
    if (head.length < 4 || head.readUInt32BE(0) !== QCOW2_MAGIC) {
      return `${path}: not a qcow2 image (it does not start with "QFI\\xfb"; format: raw?)`;
    }
  }
  return undefined;
}

/** Multiboot 0.6.96 §3.1.1: the header is 32-bit aligned within the first 8192 bytes of the image. */
const MULTIBOOT_MAGIC = 0x1badb002;
const MULTIBOOT_SEARCH = 8192;

/** Why `path` (a readable file) is not a multiboot kernel that can take modules, or undefined. */
export function multibootProblem(path: string): string | undefined {
  let head: Buffer;
  try {
    head = readHead(path, MULTIBOOT_SEARCH);
  } catch (e) {
    return `${path}: ${fileErrorReason(e)}`;
  }
  for (let off = 0; off + 12 <= head.length; off += 4) {
    if (head.readUInt32LE(off) !== MULTIBOOT_MAGIC) continue;
    // magic + flags + checksum is 0 (mod 2^32).
    if (((MULTIBOOT_MAGIC + head.readUInt32LE(off + 4) + head.readUInt32LE(off + 8)) | 0) === 0)
      return undefined;
  }
  return `modules need a multiboot kernel, and ${path} has no multiboot header (magic 0x1badb002 in its first 8 KiB)`;
}

/** Resolves a path from a config: `~/` is the user's home, relative paths are against `base`. */
export function resolvePath(base: string, p?: string): string {
  if (p === undefined) return resolve(base);
  if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
  return resolve(base, p);
}
