import { wgsl } from "../gpu/resources.ts"

/**
 * dst[i] = src[i] for vec4<f32> elements — the bandwidth ceiling: bytes moved
 * = 2 · 16 · n (one read, one write), so GB/s = 32 n / time.
 * Each invocation copies `perThread` vec4s strided by the grid size so loads coalesce.
 */
export const copyWgsl = (workgroupSize: number, perThread: number): string => wgsl`
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let stride = groups.x * ${workgroupSize}u;
  let n = arrayLength(&dst);
  for (var k = 0u; k < ${perThread}u; k++) {
    let i = gid.x + k * stride;
    if (i < n) { dst[i] = src[i]; }
  }
}
`
