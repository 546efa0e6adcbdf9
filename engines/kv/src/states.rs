//! State checkpoints over the store: one sealed value per group, written and
//! synced in one call.

use weir_core::engine::StateStore;

use super::*;

impl<S: KvStore> StateStore for KvEngine<S> {
    fn state_put(&self, group: GroupId, blob: &[u8]) -> Result<()> {
        self.write(vec![KvOp::Put(
            Table::States,
            group_key(group).to_vec(),
            seal(blob),
        )])?;
        self.guarded(|s| s.sync())
    }

    fn state_get(&self, group: GroupId) -> Result<Option<Bytes>> {
        let mut out = None;
        self.store.get(Table::States, &group_key(group), &mut |v| {
            out = Some(Bytes::copy_from_slice(unseal("state checkpoint", v)?));
            Ok(())
        })?;
        Ok(out)
    }

    fn state_remove(&self, group: GroupId) -> Result<()> {
        self.write(vec![KvOp::Delete(Table::States, group_key(group).to_vec())])?;
        self.guarded(|s| s.sync())
    }
}
