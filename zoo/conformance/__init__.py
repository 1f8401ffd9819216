"""The conformance kit: does a plugin work with everything zoo does?

``zoo check-plugin NAME|DISTRIBUTION`` (and the pytest plugin,
:mod:`zoo.conformance.pytest_plugin`) runs :func:`zoo.conformance.kit.check_plugin`: every
model, format, runtime, task and dataset the plugin registers goes through what ``zoo train``,
``zoo export`` and ``zoo bench`` would do with it, each step a check that passes, fails with
its reason, or is skipped with its reason:

* a **model**: its spec is complete and consistent; its real outputs (names, shapes, dtypes) are
  the declared ones at two batch sizes (and two lengths on other dynamic axes); a training step
  of its task runs on the task's default data and changes the weights; eval is deterministic; a
  checkpoint round-trips bit-exactly; every export format passes the parity gate (batch sizes 1
  and 3 from a graph exported at batch 2) or fails with its reason, and the outcomes are the
  model's measured capabilities (``--record`` writes them in the form a spec reads with
  :func:`zoo.capabilities.recorded`); the capabilities its spec declares must agree;
* a **format**: built-in models (an image classifier and a recurrent one) export to it, pass the
  gate, and re-verify from the manifest (``zoo export --check``);
* a **runtime**: it loads an export of a built-in model and matches eager PyTorch;
* a **task**: it trains a model that names it (a built-in one first) for one step;
* a **dataset**: it loads, its splits are non-empty and feed a model that fits it for one step.

The checks live in :mod:`zoo.conformance.kit`, which imports torch and the exporters; this
package imports nothing, so the pytest plugin (loaded by every pytest session where zoo is
installed) costs nothing in a session that does not ask for it.
"""
