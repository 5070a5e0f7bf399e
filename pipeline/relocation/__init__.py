"""Double-difference relocation with HypoDD 2.

Modules: ``params`` (the ``relocation`` config section), ``hypodd_formats`` (HypoDD file
writers and readers), ``ph2dt`` (catalog differential times), ``xcorr`` (waveform
cross-correlation differential times), ``engine`` (running the hypoDD program or the ``hypodd``
package; ``relocate_dir`` for user folders), ``stage`` (the pipeline stage ``relocate``) and
``synthetic`` (a generated cluster with ground truth for tests and benchmarks).
"""
