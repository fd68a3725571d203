import { ValidationError, type VmSpec } from '@microvm/core';
import type { ComposedVmInput, SimpleVmOptions } from './types.js';

/**
 * The guest command line every composed VM starts from: the serial console (the console primitive reads it),
 * `reboot=k` so a guest reboot (and Ctrl-Alt-Del) ends Firecracker, `panic=1` so a panic does too, and no PCI
 * probing (faster boot on Firecracker's MMIO devices).
 */
export const DEFAULT_BOOT_ARGS = 'console=ttyS0 reboot=k panic=1 pci=off';

export function isVmSpec(input: ComposedVmInput): input is VmSpec {
  return typeof input === 'object' && input !== null && 'bootSource' in input;
}

/** A `VmSpec` from the short form; a full spec is returned as a copy. Validation of values is core's job. */
export function toVmSpec(input: ComposedVmInput): VmSpec {
  if (isVmSpec(input)) return structuredClone(input);
  const simple = input as Partial<SimpleVmOptions>;
  for (const field of ['kernel', 'rootfs'] as const) {
    if (typeof simple[field] !== 'string' || simple[field] === '') {
      throw new ValidationError({
        field,
        rule: 'is required: the host path of the file',
        value: simple[field],
      });
    }
  }
  const extraDrives = (simple.drives ?? []).map((drive, index) => ({
    driveId: `data${index + 1}`,
    pathOnHost: drive.path,
    isRootDevice: false,
    isReadOnly: drive.readOnly ?? true,
  }));
  return {
    bootSource: {
      kernelImagePath: simple.kernel!,
      bootArgs: simple.bootArgs ? `${DEFAULT_BOOT_ARGS} ${simple.bootArgs}` : DEFAULT_BOOT_ARGS,
      ...(simple.initrd && { initrdPath: simple.initrd }),
    },
    machine: { vcpuCount: simple.vcpuCount ?? 1, memSizeMib: simple.memSizeMib ?? 256 },
    drives: [
      { driveId: 'rootfs', pathOnHost: simple.rootfs!, isRootDevice: true, isReadOnly: false },
      ...extraDrives,
    ],
  };
}
