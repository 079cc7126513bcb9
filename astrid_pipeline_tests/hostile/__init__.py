"""The hostile-input corpus of issue #14: generated bad inputs and faults, each with its exact expected outcome."""
