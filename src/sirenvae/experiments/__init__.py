"""Experiments: the demo, the paper's Table 1 and Figure 3, and the sweep runner."""
