import { describe, expect, it, vi } from 'vitest';
import { I440FX_SMRAM, I440fxHost } from '../../../../src/vmm/chipset/i440fx-host.js';
import { PAM0 } from '../../../../src/vmm/chipset/pam.js';
import { PCI_HEADER_TYPE } from '../../../../src/vmm/pci/config-space.js';
import type { DeviceState } from '../../../../src/vmm/core/device.js';
import { pamSetup } from './helpers.js';

function setup(pamAtPowerOn: 'rom' | 'ram' = 'rom') {
  const p = pamSetup();
  const apply = vi.spyOn(p.pam, 'apply');
  const host = new I440fxHost({ pam: p.pam, pamAtPowerOn });
  return { ...p, apply, host };
}

const modes = (pam: { mode(s: number): number | undefined }) =>
  Array.from({ length: 13 }, (_, s) => pam.mode(s));

describe('i440FX host bridge', () => {
  it('is an Intel 82441FX host bridge, revision 2, single function', () => {
    const { host } = setup();
    expect(host.readConfig(0, 4)).toBe(0x1237_8086);
    expect(host.readConfig(0x08, 4)).toBe(0x0600_0002); // class 06/00/00, revision 2
    expect(host.readConfig(PCI_HEADER_TYPE, 1)).toBe(0x00);
    expect(host.config.interruptPin).toBe(0);
  });

  it('lets the guest write PAM0 bits 5:4 and PAM1-6 bits 5:4 and 1:0 only', () => {
    const { host } = setup();
    host.writeConfig(0x58, 4, 0xffffffff);
    host.writeConfig(0x5c, 4, 0xffffffff);
    expect(host.readConfig(0x58, 4)).toBe(0x3333_3000); // 0x58 is not a PAM register
    expect(host.readConfig(0x5c, 4)).toBe(0x3333_3333);
    expect(host.readConfig(0x60, 1)).toBe(0); // past PAM6
    expect(host.pamRegisters()).toEqual([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]);
    host.writeConfig(PAM0, 1, 0xcf);
    expect(host.readConfig(PAM0, 1)).toBe(0);
  });

  it('applies the PAM registers to the PAM memory on every write that touches them', () => {
    const { host, apply, pam, mapper } = setup();
    apply.mockClear();
    mapper.take();
    host.writeConfig(0x5a, 1, 0x31); // PAM1: 0xC0000 read-only DRAM, 0xC4000 read-write
    expect(apply).toHaveBeenCalledTimes(1);
    expect(apply).toHaveBeenLastCalledWith([0, 0x31, 0, 0, 0, 0, 0]);
    expect(pam.mode(1)).toBe(1);
    expect(pam.mode(2)).toBe(3);
    expect(mapper.take()).toEqual([
      'unmap 11',
      expect.stringMatching(/^map c0000\+4000 1@c0000 ro/),
      'unmap 12',
      expect.stringMatching(/^map c4000\+4000 1@c4000 rw/),
    ]);

    host.writeConfig(0x58, 4, 0x0000_1000); // a DWORD that covers PAM0
    expect(apply).toHaveBeenLastCalledWith([0x10, 0, 0, 0, 0, 0, 0]);
    expect(pam.mode(0)).toBe(1);
    host.writeConfig(0x5c, 2, 0x3322); // PAM3-PAM4
    host.writeConfig(0x5f, 1, 0x03); // PAM6
    expect(apply).toHaveBeenLastCalledWith([0x10, 0, 0, 0x22, 0x33, 0, 0x03]);
    expect(apply).toHaveBeenCalledTimes(4);

    for (const [off, size] of [
      [0x54, 4], // ends at 0x57
      [0x60, 4], // starts past PAM6
      [I440FX_SMRAM, 1],
      [0x04, 2],
    ] as const)
      host.writeConfig(off, size, 0xffffffff);
    expect(apply).toHaveBeenCalledTimes(4);
  });

  it("powers on with the BIOS ROM answering ('rom') or all DRAM ('ram', direct kernel boot)", () => {
    const rom = setup('rom');
    expect(rom.host.pamRegisters()).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(modes(rom.pam)).toEqual(new Array(13).fill(0));
    expect(rom.mapper.calls.filter((c) => / ro -> /.test(c))).toHaveLength(13);

    const ram = setup('ram');
    expect(ram.host.pamRegisters()).toEqual([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]);
    expect(modes(ram.pam)).toEqual(new Array(13).fill(3));
    const maps = ram.mapper.take();
    expect(maps).toHaveLength(13);
    expect(maps.every((c) => /^map [0-9a-f]+\+[0-9a-f]+ 1@[0-9a-f]+ rw -> /.test(c))).toBe(true);
  });

  it('keeps SMRAM at 0x02 with only D_OPEN, D_CLS, D_LCK and G_SMRAME writable', () => {
    const { host } = setup();
    expect(host.readConfig(I440FX_SMRAM, 1)).toBe(0x02);
    host.writeConfig(I440FX_SMRAM, 1, 0xff);
    expect(host.readConfig(I440FX_SMRAM, 1)).toBe(0x7a);
    host.writeConfig(I440FX_SMRAM, 1, 0x00);
    expect(host.readConfig(I440FX_SMRAM, 1)).toBe(0x02);
    host.writeConfig(0x70, 4, 0x0048_0000);
    expect(host.readConfig(I440FX_SMRAM, 1)).toBe(0x4a);
  });

  it('reset restores the power-on PAM (and remaps) and SMRAM', () => {
    for (const power of ['rom', 'ram'] as const) {
      const { host, pam, mapper } = setup(power);
      const initial = host.pamRegisters();
      host.writeConfig(0x58, 4, 0x1111_1000);
      host.writeConfig(0x5c, 4, 0x1111_1111); // all read-only DRAM
      host.writeConfig(I440FX_SMRAM, 1, 0x48);
      expect(modes(pam)).toEqual(new Array(13).fill(1));
      mapper.take();
      host.reset();
      expect(host.pamRegisters()).toEqual(initial);
      expect(modes(pam)).toEqual(new Array(13).fill(power === 'ram' ? 3 : 0));
      expect(mapper.take()).toHaveLength(26); // every segment was changed: unmapped and mapped again
      expect(host.readConfig(I440FX_SMRAM, 1)).toBe(0x02);
    }
  });

  it('saves and loads its config; loading re-applies PAM', () => {
    const a = setup();
    a.host.writeConfig(0x58, 4, 0x3121_1000);
    a.host.writeConfig(0x5c, 4, 0x0003_2200);
    a.host.writeConfig(I440FX_SMRAM, 1, 0x08);
    const saved = JSON.parse(JSON.stringify(a.host.saveState())) as DeviceState;

    const b = setup();
    b.apply.mockClear();
    b.host.loadState(saved);
    expect(b.apply).toHaveBeenCalledTimes(1);
    expect(b.host.pamRegisters()).toEqual(a.host.pamRegisters());
    expect(modes(b.pam)).toEqual(modes(a.pam));
    expect(modes(b.pam)).toContain(3);
    expect(b.host.readConfig(I440FX_SMRAM, 1)).toBe(0x0a);
    expect(() => b.host.loadState({ ...saved, version: 2 })).toThrow(/version 2/);
  });
});
