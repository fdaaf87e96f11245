/**
 * The flag a probe's child process is started with (`<entry> PROBE_FLAG NAME`):
 * the GPU entry and the command line answer it before anything else. A module
 * of its own, so the command line reads it without loading the kernels.
 */
export const PROBE_FLAG = "--subgroup-matrix-probe"
