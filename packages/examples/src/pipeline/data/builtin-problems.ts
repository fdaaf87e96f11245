import type { Problem } from "../problems.ts"

/**
 * Short stdin → stdout problems written for Canopy, so runs need no download.
 * Each is small enough that a tiny model has a real chance, which keeps pass@k
 * informative rather than pinned at zero.
 */
export const BUILTIN_PROBLEMS: ReadonlyArray<Problem> = [
  {
    id: "canopy-sum-two",
    question: "Read two integers a and b on one line, separated by a space. Print their sum.",
    tests: [
      { input: "2 3\n", output: "5" },
      { input: "-7 7\n", output: "0" },
      { input: "1000000000 1000000000\n", output: "2000000000" }
    ]
  },
  {
    id: "canopy-reverse-string",
    question: "Read one line of text. Print the line with its characters in reverse order.",
    tests: [
      { input: "hello\n", output: "olleh" },
      { input: "Canopy tree\n", output: "eert yponaC" }
    ]
  },
  {
    id: "canopy-count-vowels",
    question:
      "Read one line of text. Print how many of its characters are vowels (a, e, i, o, u), counting upper and lower case.",
    tests: [
      { input: "hello world\n", output: "3" },
      { input: "AEIOU xyz\n", output: "5" },
      { input: "rhythm\n", output: "0" }
    ]
  },
  {
    id: "canopy-fizzbuzz",
    question:
      "Read an integer n. For each i from 1 to n print one line: \"FizzBuzz\" if i is divisible by 15, \"Fizz\" if divisible by 3, \"Buzz\" if divisible by 5, and i otherwise.",
    tests: [
      { input: "5\n", output: "1\n2\nFizz\n4\nBuzz" },
      { input: "15\n", output: "1\n2\nFizz\n4\nBuzz\nFizz\n7\n8\nFizz\nBuzz\n11\nFizz\n13\n14\nFizzBuzz" }
    ]
  },
  {
    id: "canopy-max-of-list",
    question: "The first line holds n. The second line holds n integers. Print the largest of them.",
    tests: [
      { input: "5\n3 9 2 7 4\n", output: "9" },
      { input: "3\n-5 -2 -9\n", output: "-2" },
      { input: "1\n42\n", output: "42" }
    ]
  },
  {
    id: "canopy-palindrome",
    question: "Read one word. Print \"YES\" if it reads the same forwards and backwards, otherwise print \"NO\".",
    tests: [
      { input: "racecar\n", output: "YES" },
      { input: "canopy\n", output: "NO" },
      { input: "a\n", output: "YES" }
    ]
  },
  {
    id: "canopy-gcd",
    question: "Read two positive integers a and b on one line. Print their greatest common divisor.",
    tests: [
      { input: "12 18\n", output: "6" },
      { input: "17 5\n", output: "1" },
      { input: "100 75\n", output: "25" }
    ]
  },
  {
    id: "canopy-running-sum",
    question:
      "The first line holds n. The second line holds n integers. Print the running sums: the i-th printed number is the sum of the first i integers, all on one line separated by spaces.",
    tests: [
      { input: "4\n1 2 3 4\n", output: "1 3 6 10" },
      { input: "3\n5 -5 2\n", output: "5 0 2" }
    ]
  },
  {
    id: "canopy-word-count",
    question: "Read one line of text. Print the number of words in it, where words are separated by one or more spaces.",
    tests: [
      { input: "the quick brown fox\n", output: "4" },
      { input: "  spaced   out  \n", output: "2" },
      { input: "single\n", output: "1" }
    ]
  },
  {
    id: "canopy-second-largest",
    question:
      "The first line holds n (n >= 2). The second line holds n integers, not all equal. Print the second largest distinct value.",
    tests: [
      { input: "5\n4 1 9 7 9\n", output: "7" },
      { input: "2\n3 8\n", output: "3" },
      { input: "4\n-1 -1 -3 -2\n", output: "-2" }
    ]
  }
]
