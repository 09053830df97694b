"""The test suite: tests/<wing>/test_<module>.py mirrors gateway/<wing>/<module>.py (and ledger/, devkit/)."""
