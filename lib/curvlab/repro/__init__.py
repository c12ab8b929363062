"""Paper reproductions: configs per scale, run functions, read-outs, figures and verdicts."""
