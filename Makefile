# The two commands of the README. Each sets the machine up first (scripts/setup.sh).
.PHONY: demo test setup

setup:
	@bash scripts/setup.sh

demo: setup
	@pnpm canopy demo

test: setup
	@pnpm --silent typecheck
	@pnpm --silent test
