"""pylab: whole topologies (labs) of real processes, one supervisor for labs, tests and
benchmarks."""

from pylab.supervisor import ProcessState, Supervisor, SupervisorError
from pylab.topology import Lab, ProcessSpec, load_lab

__all__ = ["Lab", "ProcessSpec", "ProcessState", "Supervisor", "SupervisorError", "load_lab"]
