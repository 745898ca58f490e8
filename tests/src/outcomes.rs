//! What each client of a workload was told, and the checks against it (chaos suite).
