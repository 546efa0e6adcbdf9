//! The cluster suite over the in-memory engine and the in-memory network.

weir_conformance::cluster_suite!(weir_conformance::cluster::MemoryEngines);
