import type { Problem } from "./problems.ts"

interface WorkedExample {
  readonly question: string
  readonly solution: string
}

// Deliberately unlike the built-in problems, so the shots teach the format without leaking answers.
const WORKED_EXAMPLES: ReadonlyArray<WorkedExample> = [
  {
    question:
      "The first line holds n. The second line holds n integers. Print the sum of the even ones.",
    solution: ["n = int(input())", "values = list(map(int, input().split()))", "print(sum(v for v in values if v % 2 == 0))"]
      .join("\n")
  },
  {
    question:
      "Read one line of words separated by spaces. Print the longest word; if several are equally long, print the first of them.",
    solution: ["words = input().split()", "best = words[0]", "for word in words[1:]:", "    if len(word) > len(best):", "        best = word", "print(best)"]
      .join("\n")
  }
]

const FENCE = "```"
const OPEN_ANSWER = `ANSWER:\n${FENCE}python\n`

const renderQuestion = (question: string): string => `QUESTION:\n${question.trim()}\n`

/** The prefix shared by every problem node: an instruction and two worked problems. */
export const FEW_SHOT_PROMPT: string = [
  "Solve each programming problem with a Python 3 program that reads from standard input and writes to standard output.\n",
  ...WORKED_EXAMPLES.map((example) => `${renderQuestion(example.question)}${OPEN_ANSWER}${example.solution}\n${FENCE}\n`)
].join("\n")

/**
 * Generation should stop at the closing fence; the question marker catches a
 * model that skips the fence and starts inventing the next problem.
 */
export const STOP_SEQUENCES: ReadonlyArray<string> = [FENCE, "\nQUESTION:"]

export interface ProblemPromptOptions {
  /** How many of the problem's tests to show as examples (APPS questions usually include their own). */
  readonly examples?: number
}

/**
 * Text of the per-problem tree node, appended after FEW_SHOT_PROMPT. It ends
 * inside an open python fence so the completion is code from its first token.
 */
export const renderProblemPrompt = (problem: Problem, options: ProblemPromptOptions = {}): string => {
  const shown = problem.tests.slice(0, options.examples ?? 0)
  const examples = shown
    .map((test) => `\nExample input:\n${test.input.trimEnd()}\nExample output:\n${test.output.trimEnd()}`)
    .join("\n")
  return `\n${renderQuestion(problem.question + examples)}${OPEN_ANSWER}`
}

const OPENING_FENCE = /^```[ \t]*(python3?|py)?[ \t]*\n/

/**
 * Pulls the Python program out of a completion. The first fence decides the
 * shape: a closing fence after code (the prompt opened the block), or an
 * opening fence (tagged, or bare at the start) whose body is the program. Raw
 * code is cut where the model starts inventing another question.
 */
export const extractProgram = (sampleText: string): string => {
  const text = sampleText.replace(/\r\n/g, "\n")
  const firstFence = text.indexOf(FENCE)
  let code = text
  if (firstFence !== -1) {
    const before = text.slice(0, firstFence)
    const opening = OPENING_FENCE.exec(text.slice(firstFence))
    const isOpening = opening !== null && (opening[1] !== undefined || before.trim() === "")
    if (isOpening) {
      const body = text.slice(firstFence + opening[0].length)
      const close = body.indexOf(FENCE)
      code = close === -1 ? body : body.slice(0, close)
    } else {
      code = before
    }
  }
  const nextQuestion = code.indexOf("\nQUESTION:")
  if (nextQuestion !== -1) code = code.slice(0, nextQuestion)
  return code.replace(/^\s*\n/, "").trimEnd()
}
