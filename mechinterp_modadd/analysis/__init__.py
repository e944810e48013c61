"""One module per claim family. Each public function takes a model (or a spectrum, or a checkpoint
series) and returns a small typed result: numbers, a verdict and ``to_frame()``/``to_dict()``.
No plotting and no printing here; figures live in ``mechinterp_modadd.plots``."""
