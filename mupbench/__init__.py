"""mupbench: width-scaling studies under the Standard and the Maximal Update Parametrization."""

__version__ = "0.1.0"
