/**
 * The matrix values of the subgroup-matrix kernels, written two ways.
 *
 * Matrix types are <T, columns, rows>: left <f16, K, M> is M×K, right
 * <f16, N, K> is K×N, result <f32, N, M> is M×N; a load or store names an
 * array, an offset, row- or column-major and a stride (element (r, c) at
 * offset + r·stride + c, or offset + c·stride + r).
 */

/** One of the adapter's subgroupMatrixConfigs with f16 operands and an f32 result. */
export interface MatrixConfig {
  readonly M: number
  readonly N: number
  readonly K: number
}

/**
 * How the kernel's matrix values are written. `DEVICE_MATRICES` are the
 * builtins. `EMULATED_MATRICES` is plain WGSL with the same meaning, every
 * invocation holding whole matrices (as f32, exact for f16 values) and doing
 * whole products: slow, but any shader-f16 adapter runs it, so everything of a
 * kernel except the builtins themselves (offsets, strides, staging, the split,
 * the epilogue) is checked against float64 where no device has the feature.
 */
export interface MatrixOps {
  readonly name: "device" | "emulated"
  type(kind: "left" | "right" | "result", c: MatrixConfig): string
  /** `target` (declared here when `declare`) = the matrix at `offset` of array `source` */
  load(kind: "left" | "right", c: MatrixConfig, target: string, declare: boolean, source: string, offset: string, colMajor: boolean, stride: string): string
  /** acc += a·b */
  multiplyAccumulate(c: MatrixConfig, acc: string, a: string, b: string): string
  /** `matrix` into array `target` at `offset`, row-major with `stride` */
  store(c: MatrixConfig, target: string, offset: string, matrix: string, stride: string): string
}

export const SUBGROUP_MATRIX_FEATURE = "chromium-experimental-subgroup-matrix"

interface AdapterMatrixInfo {
  readonly subgroupMinSize?: number
  readonly subgroupMaxSize?: number
  readonly subgroupMatrixConfigs?: Iterable<{ componentType: string; resultComponentType: string; M: number; N: number; K: number }>
}

/** What a matrix kernel is built for: the device's matrix config and its one subgroup size. */
export interface MatrixSetup {
  readonly config: MatrixConfig
  /** invocations per subgroup (the device's fixed size): a matrix kernel's workgroup size */
  readonly subgroupSize: number
}

/** The f16 → f32 config the probes use (16×16×16 where offered, else the largest) and the fixed subgroup size, or why there is none. */
export const matrixSetup = (device: GPUDevice): MatrixSetup | string => {
  if (!device.features.has(SUBGROUP_MATRIX_FEATURE)) return `the device has no ${SUBGROUP_MATRIX_FEATURE}`
  const info = (device as unknown as { adapterInfo?: AdapterMatrixInfo }).adapterInfo
  const configs = [...(info?.subgroupMatrixConfigs ?? [])].filter((c) => c.componentType === "f16" && c.resultComponentType === "f32")
  if (configs.length === 0) return "the adapter offers no f16 → f32 subgroup-matrix config"
  const { subgroupMinSize: min, subgroupMaxSize: max } = info ?? {}
  if (min === undefined || min !== max) return `the probes need one fixed subgroup size (the adapter has ${min}–${max})`
  const best = configs.find((c) => c.M === 16 && c.N === 16 && c.K === 16) ?? [...configs].sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K)[0]!
  return { config: { M: best.M, N: best.N, K: best.K }, subgroupSize: min }
}

/** The device's matrices as the engine's kernels use them: its config and subgroup size, and how the operations are written. */
export interface MatrixUnits extends MatrixSetup {
  readonly ops: MatrixOps
}

/** The matrices of `setup` written with the device's builtins. */
export const builtinMatrixUnits = (setup: MatrixSetup): MatrixUnits => ({ ...setup, ops: DEVICE_MATRICES })

/** The device's matrix units as the engine's matrix kernels use them (its builtins), or why it has none. */
export const deviceMatrixUnits = (device: GPUDevice): MatrixUnits | string => {
  const setup = matrixSetup(device)
  return typeof setup === "string" ? setup : builtinMatrixUnits(setup)
}

/** Rows and columns of a matrix kind. */
const dims = (kind: "left" | "right" | "result", c: MatrixConfig): readonly [number, number] =>
  kind === "left" ? [c.M, c.K] : kind === "right" ? [c.K, c.N] : [c.M, c.N]

export const DEVICE_MATRICES: MatrixOps = {
  name: "device",
  type: (kind, c) => {
    const [rows, cols] = dims(kind, c)
    return `subgroup_matrix_${kind}<${kind === "result" ? "f32" : "f16"}, ${cols}, ${rows}>`
  },
  load: (kind, c, target, declare, source, offset, colMajor, stride) =>
    `${declare ? "let " : ""}${target} = subgroupMatrixLoad<${DEVICE_MATRICES.type(kind, c)}>(&${source}, ${offset}, ${colMajor}, ${stride});`,
  multiplyAccumulate: (_, acc, a, b) => `${acc} = subgroupMatrixMultiplyAccumulate(${a}, ${b}, ${acc});`,
  store: (_, target, offset, matrix, stride) => `subgroupMatrixStore(&${target}, ${offset}, ${matrix}, false, ${stride});`
}

// The emulation's own names start with sm_, so offsets written in the kernel's names keep their meaning inside its loops.
export const EMULATED_MATRICES: MatrixOps = {
  name: "emulated",
  type: (kind, c) => `array<f32, ${dims(kind, c)[0] * dims(kind, c)[1]}>`,
  load: (kind, c, target, declare, source, offset, colMajor, stride) => {
    const [rows, cols] = dims(kind, c)
    const at = colMajor ? `sm_c * (${stride}) + sm_r` : `sm_r * (${stride}) + sm_c`
    return `${declare ? `var ${target}: ${EMULATED_MATRICES.type(kind, c)};\n` : ""}for (var sm_i = 0u; sm_i < ${rows * cols}u; sm_i++) {
  let sm_r = sm_i / ${cols}u;
  let sm_c = sm_i % ${cols}u;
  ${target}[sm_i] = f32(${source}[(${offset}) + ${at}]);
}`
  },
  // one flat loop (no inner loop a compiler would unroll: the emulation compiles in seconds), k innermost
  multiplyAccumulate: (c, acc, a, b) => `for (var sm_i = 0u; sm_i < ${c.M * c.N * c.K}u; sm_i++) {
  let sm_rc = sm_i / ${c.K}u;
  let sm_k = sm_i % ${c.K}u;
  ${acc}[sm_rc] += ${a}[(sm_rc / ${c.N}u) * ${c.K}u + sm_k] * ${b}[sm_k * ${c.N}u + sm_rc % ${c.N}u];
}`,
  store: (c, target, offset, matrix, stride) => `for (var sm_i = 0u; sm_i < ${c.M * c.N}u; sm_i++) {
  ${target}[(${offset}) + (sm_i / ${c.N}u) * (${stride}) + sm_i % ${c.N}u] = ${matrix}[sm_i];
}`
}

