"""storysync benchmarks: a seeded story-repository generator and a whole-process runner.

``python -m benchmarks.generate --size 10k`` builds (and caches) a repository;
``python -m benchmarks.run --sizes 1k,10k --repeat 5`` measures and writes
``docs/performance.md``.  Nothing here runs in the default test suite except a
tiny smoke run (tests/test_benchmarks_smoke.py).
"""
