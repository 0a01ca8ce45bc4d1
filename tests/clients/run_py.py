"""Runs Python test modules under unittest for ctest: exit 0 when tests ran
and passed, 1 on a failure, 77 (ctest: skipped) when every test skipped.
Prints each test's duration and every skip reason, so a CI log shows which
server features were not there yet."""
import os
import sys
import time
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "clients", "python"))


class TimedResult(unittest.TextTestResult):
    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.stream.write(f"    ({time.monotonic() - self._t0:.1f} s)\n")


suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:])
res = unittest.TextTestRunner(verbosity=2, resultclass=TimedResult).run(suite)
if not res.wasSuccessful():
    sys.exit(1)
ran = res.testsRun - len(res.skipped)
for test, why in res.skipped:
    print(f"SKIPPED {test}: {why}")
if ran <= 0:
    sys.exit(77)
print(f"{ran} passed, 0 failed, {len(res.skipped)} skipped")
sys.exit(0)
