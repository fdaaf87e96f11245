/**
 * Unbiased pass@k estimator (Chen et al., 2021): with n samples of which c
 * pass, pass@k = 1 − C(n−c, k) / C(n, k). The ratio is computed as the product
 * ∏_{i=n−c+1}^{n} (1 − k/i), which never forms the huge binomials.
 */
export const passAtK = (n: number, c: number, k: number): number => {
  if (!Number.isInteger(n) || !Number.isInteger(c) || !Number.isInteger(k)) {
    throw new RangeError(`pass@k needs integers, got n=${n} c=${c} k=${k}`)
  }
  if (n < 1 || c < 0 || c > n || k < 1 || k > n) {
    throw new RangeError(`pass@k needs 0 <= c <= n and 1 <= k <= n, got n=${n} c=${c} k=${k}`)
  }
  // Fewer failures than k: every draw of k samples contains a pass.
  if (n - c < k) return 1
  let allFail = 1
  for (let i = n - c + 1; i <= n; i++) allFail *= 1 - k / i
  return 1 - allFail
}

/** The usual k values 1, 5, 10, 50, 100, 500, … that do not exceed n. */
export const defaultKs = (n: number): ReadonlyArray<number> => {
  const ks: Array<number> = []
  for (let decade = 1; decade <= n; decade *= 10) {
    ks.push(decade)
    if (5 * decade <= n) ks.push(5 * decade)
  }
  return ks
}

export interface ProblemCounts {
  readonly problemId: string
  /** Samples drawn. */
  readonly n: number
  /** Samples that passed every test. */
  readonly c: number
}

export interface PassAtKSummary {
  readonly ks: ReadonlyArray<number>
  /** `values[i]` is pass@ks[i]. */
  readonly perProblem: ReadonlyArray<ProblemCounts & { readonly values: ReadonlyArray<number> }>
  /** Mean over problems, each weighted equally, as in the Codex and APPS reports. */
  readonly overall: ReadonlyArray<number>
}

/**
 * pass@k per problem and overall. Only k up to the smallest n is reported, so
 * every problem contributes to every column.
 */
export const summarizePassAtK = (
  problems: ReadonlyArray<ProblemCounts>,
  ks?: ReadonlyArray<number>
): PassAtKSummary => {
  if (problems.length === 0) return { ks: [], perProblem: [], overall: [] }
  const smallestN = Math.min(...problems.map((p) => p.n))
  const chosen = (ks ?? defaultKs(smallestN)).filter((k) => k <= smallestN)
  const perProblem = problems.map((p) => ({ ...p, values: chosen.map((k) => passAtK(p.n, p.c, k)) }))
  const overall = chosen.map((_, i) => perProblem.reduce((sum, p) => sum + (p.values[i] ?? 0), 0) / perProblem.length)
  return { ks: chosen, perProblem, overall }
}
