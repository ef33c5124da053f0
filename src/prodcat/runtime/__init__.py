"""Where and how the work runs: errors, devices, hub folders, checkpoints, progress logs, profiling and cost counts."""
