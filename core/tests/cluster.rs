//! The cluster suite over the in-memory engine and the in-memory network.

weir_conformance::cluster_suite!(weir_conformance::cluster::MemoryEngines);

/// A power loss under acknowledged writes loses nothing: the history checker's
/// report is valid.
#[test]
fn power_loss_keeps_acknowledged_writes() {
    let r = weir_conformance::cluster::block_on(weir_conformance::cluster::power_loss_history(
        std::sync::Arc::new(weir_conformance::cluster::MemoryEngines),
        std::sync::Arc::new(weir_conformance::net::MemNet::default()),
        40,
    ))
    .expect("power-loss scenario");
    assert_eq!(r.acknowledged, 40, "{r}");
    assert!(r.is_valid(), "{r}");
}

/// Negative control: the same power loss with fsync turned off (engines whose sync
/// does nothing) must make the checker report lost acknowledged writes.
#[test]
fn power_loss_with_fsync_off_is_caught_by_the_checker() {
    let r = weir_conformance::cluster::block_on(weir_conformance::cluster::power_loss_history(
        std::sync::Arc::new(weir_conformance::cluster::NoSyncMemoryEngines),
        std::sync::Arc::new(weir_conformance::net::MemNet::default()),
        40,
    ))
    .expect("power-loss scenario");
    assert_eq!(r.acknowledged, 40, "{r}");
    assert!(!r.is_valid() && !r.lost.is_empty(), "{r}");
}
