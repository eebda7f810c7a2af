"""The broadcast executor: jobs and commands in, calls out, every event reported."""
