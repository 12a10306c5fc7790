/**
 * Save and restore of the controller's state (DeviceState version 1): the
 * registers, the phase, the drives' head positions and change latches, and
 * a data command caught in its execution phase, with the validation of a
 * loaded state.
 */
import { Buffer } from 'node:buffer';
import { DeviceStateError, expectVersion, type DeviceState } from '../../core/device.js';
import { DOR_DMAGATE, FLOPPY_SECTOR_SIZE, MAX_DRIVES, RESET_SENSEI_COUNT } from './constants.js';
import type { Execution, FdcCore, Phase, Stage, TransferKind } from './core.js';
import type { SectorId } from './drive.js';
import { decode } from './opcodes.js';
import { commit, fetchSectors } from './transfer.js';

export function saveFdcState(fdc: FdcCore): DeviceState {
  const x = fdc.exec;
  return {
    version: 1,
    dor: fdc.dor,
    tdr: fdc.tdr,
    dsr: fdc.dsr,
    phase: fdc.phase,
    cmd: [...fdc.cmd],
    result: [...fdc.result],
    resultPos: fdc.resultPos,
    intPending: fdc.intPending,
    senseSt0: fdc.senseSt0 ?? null,
    senseDrive: fdc.senseDrive,
    resetSensei: fdc.resetSensei,
    driveBusy: fdc.driveBusy,
    specify: [fdc.specify1, fdc.specify2],
    config: fdc.config,
    pretrk: fdc.pretrk,
    locked: fdc.locked,
    perpendicular: fdc.perpendicular,
    driveSpec: [...fdc.driveSpec],
    powerdown: fdc.powerdown,
    lastScEot: fdc.lastScEot,
    drives: fdc.drives.slice(0, MAX_DRIVES).map((d) => ({
      track: d.track,
      head: d.head,
      sector: d.sector,
      changed: d.changed,
    })),
    exec: x
      ? {
          kind: x.kind,
          drive: x.drive,
          cmd: [...x.cmd],
          sectors: x.sectors.map((s) => [s.c, s.h, s.r]),
          end: x.end,
          missing: x.missing ? [x.missing.c, x.missing.h, x.missing.r] : null,
          // Data the guest has seen or sent; a read still fetching is simply fetched again.
          data: x.stage === 'fetch' ? null : Buffer.from(x.data).toString('base64'),
          length: x.data.length,
          stage: x.stage,
          done: x.done,
          tc: x.tc,
          seeked: x.seeked,
        }
      : null,
  };
}

/**
 * Restores registers, phase and any command in progress: image I/O that
 * was in flight is issued again, and a DMA data phase re-asserts DREQ, so
 * load the DMA controller's state first.
 */
export function loadFdcState(fdc: FdcCore, state: DeviceState): void {
  expectVersion(fdc.name, state, 1);
  const bad = (what: string): never => {
    throw new DeviceStateError(`${fdc.name}: malformed state (${what})`);
  };
  const s = state as Record<string, unknown>;
  const byte = (k: string): number => {
    const v = s[k];
    return isUint(v, 0xff) ? v : bad(k);
  };
  const bytes = (v: unknown, k: string, max = 64): number[] =>
    Array.isArray(v) && v.length <= max && v.every((b) => isUint(b, 0xff)) ? (v as number[]) : bad(k);
  const phase = s.phase;
  if (phase !== 'command' && phase !== 'execution' && phase !== 'result') bad('phase');
  const result = bytes(s.result, 'result', 16);
  const rawPos = s.resultPos;
  const resultPos = isUint(rawPos, result.length) ? rawPos : bad('resultPos');
  const specify = bytes(s.specify, 'specify', 2);
  const driveSpec = bytes(s.driveSpec, 'driveSpec', 4);
  if (specify.length !== 2 || driveSpec.length !== 4) bad('specify');
  if (typeof s.intPending !== 'boolean' || typeof s.locked !== 'boolean') bad('flags');
  if (s.senseSt0 !== null && !isUint(s.senseSt0, 0xff)) bad('senseSt0');
  if (!isUint(s.senseDrive, 3) || !isUint(s.resetSensei, RESET_SENSEI_COUNT) || !isUint(s.driveBusy, 0xf)) {
    bad('sense');
  }
  const drives =
    Array.isArray(s.drives) && s.drives.length === MAX_DRIVES ? (s.drives as unknown[]) : bad('drives');
  const driveStates = drives.map((raw) => {
    const o = (typeof raw === 'object' && raw !== null ? raw : bad('drive')) as Record<string, unknown>;
    if (
      !isUint(o.track, 0xff) ||
      !isUint(o.head, 1) ||
      !isUint(o.sector, 0xff) ||
      typeof o.changed !== 'boolean'
    ) {
      bad('drive');
    }
    return o as { track: number; head: number; sector: number; changed: boolean };
  });
  const exec = s.exec === null ? undefined : parseExec(s.exec, bad);
  if ((phase === 'execution') !== (exec !== undefined)) bad('exec');
  const cmd = bytes(s.cmd, 'cmd', 16);

  fdc.generation++; // nothing in flight belongs to the loaded state
  fdc.dor = byte('dor');
  fdc.tdr = byte('tdr');
  fdc.dsr = byte('dsr');
  fdc.phase = phase as Phase;
  fdc.cmd = cmd;
  fdc.cmdInfo = cmd.length > 0 ? decode(cmd[0]!) : { op: 'invalid', params: 0 };
  fdc.result = result;
  fdc.resultPos = resultPos;
  fdc.senseSt0 = s.senseSt0 === null ? undefined : (s.senseSt0 as number);
  fdc.senseDrive = s.senseDrive as number;
  fdc.resetSensei = s.resetSensei as number;
  fdc.driveBusy = s.driveBusy as number;
  [fdc.specify1, fdc.specify2] = specify as [number, number];
  fdc.config = byte('config');
  fdc.pretrk = byte('pretrk');
  fdc.locked = s.locked as boolean;
  fdc.perpendicular = byte('perpendicular');
  driveSpec.forEach((v, i) => (fdc.driveSpec[i] = v));
  fdc.powerdown = byte('powerdown');
  fdc.lastScEot = byte('lastScEot');
  driveStates.forEach((o, i) => {
    const d = fdc.drives[i]!;
    d.track = o.track;
    d.head = o.head;
    d.sector = o.sector;
    d.changed = o.changed;
  });
  fdc.exec = exec;
  fdc.intPending = s.intPending as boolean;
  // The line level as the loaded state has it (an edge-triggered line is re-raised if pending).
  fdc.irqLevel = fdc.intPending && (fdc.dor & DOR_DMAGATE) !== 0;
  fdc.ctx.irq.setIrq(fdc.irqLine, fdc.irqLevel);
  fdc.dreqHeld = false;
  fdc.dma.releaseDreq(fdc.dmaChannel);
  if (exec?.stage === 'fetch') fetchSectors(fdc, exec);
  else if (exec?.stage === 'commit') commit(fdc, exec);
  else fdc.updateDreq();
}

function parseExec(raw: unknown, bad: (what: string) => never): Execution {
  const o = (typeof raw === 'object' && raw !== null ? raw : bad('exec')) as Record<string, unknown>;
  const kind = o.kind;
  if (kind !== 'read' && kind !== 'write' && kind !== 'format') bad('exec.kind');
  const stage = o.stage;
  if (stage !== 'fetch' && stage !== 'transfer' && stage !== 'commit') bad('exec.stage');
  if (!isUint(o.drive, MAX_DRIVES - 1)) bad('exec.drive');
  const cmd =
    Array.isArray(o.cmd) && o.cmd.length >= 2 && o.cmd.length <= 9 && o.cmd.every((b) => isUint(b, 0xff))
      ? (o.cmd as number[])
      : bad('exec.cmd');
  const id = (v: unknown): SectorId =>
    Array.isArray(v) && v.length === 3 && v.every((b) => isUint(b, 0xff))
      ? { c: v[0] as number, h: v[1] as number, r: v[2] as number }
      : bad('exec.sector');
  const sectors =
    Array.isArray(o.sectors) && o.sectors.length <= 512 ? o.sectors.map(id) : bad('exec.sectors');
  if (o.end !== 'eot' && o.end !== 'notfound') bad('exec.end');
  const missing = o.missing === null ? undefined : id(o.missing);
  const rawLength = o.length;
  const length = isUint(rawLength, 512 * FLOPPY_SECTOR_SIZE) ? rawLength : bad('exec.length');
  let data = new Uint8Array(length);
  if (o.data !== null) {
    if (typeof o.data !== 'string') bad('exec.data');
    const decoded = Buffer.from(o.data as string, 'base64');
    if (decoded.length !== length) bad('exec.data');
    data = new Uint8Array(decoded);
  } else if (stage !== 'fetch') {
    bad('exec.data');
  }
  if (!isUint(o.done, length) || typeof o.tc !== 'boolean' || typeof o.seeked !== 'boolean') bad('exec.done');
  return {
    kind: kind as TransferKind,
    drive: o.drive as number,
    cmd,
    sectors,
    end: o.end as Execution['end'],
    missing,
    data,
    stage: stage as Stage,
    done: o.done as number,
    tc: o.tc as boolean,
    seeked: o.seeked as boolean,
  };
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}
