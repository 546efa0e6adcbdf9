//! How each [`MetaCommand`] changes the metadata: deterministic, so that every
//! replica of group 0 that applies the same commands has the same state.

use super::{Broker, MetaCommand, Metadata, PRODUCER_ID_BLOCK, PartitionMeta, Topic, topic_id};
use crate::ids::GroupId;

impl Metadata {
    /// Applies one command (every replica the same way: deterministic).
    pub(super) fn apply(&mut self, cmd: MetaCommand) {
        let st = self;
        match cmd {
            MetaCommand::RegisterBroker {
                id,
                kafka_addr,
                rack,
            } => {
                st.brokers.insert(id, Broker { id, kafka_addr });
                match rack {
                    Some(rack) => st.racks.insert(id, rack),
                    None => st.racks.remove(&id),
                };
            }
            MetaCommand::CreateTopic {
                name,
                replicas,
                configs,
                kind,
            } => {
                if st.topics.contains_key(&name) || replicas.is_empty() {
                    return;
                }
                let id = topic_id(&name, GroupId(st.next_group + 1));
                st.topic_ids.insert(id, name.clone());
                let partitions = replicas
                    .into_iter()
                    .enumerate()
                    .map(|(i, replicas)| {
                        st.next_group += 1;
                        PartitionMeta {
                            index: i as i32,
                            group: GroupId(st.next_group),
                            replicas,
                            leader: None,
                        }
                    })
                    .collect();
                st.topics.insert(
                    name.clone(),
                    Topic {
                        name,
                        id,
                        partitions,
                        configs,
                        kind,
                    },
                );
            }
            MetaCommand::RegisterPeer { id, peer_addr } => {
                st.peers.insert(id, peer_addr);
            }
            MetaCommand::RemoveBroker { id } => {
                st.brokers.remove(&id);
                st.peers.remove(&id);
                st.racks.remove(&id);
            }
            MetaCommand::Reassign { group, target } => {
                let known = st
                    .topics
                    .values()
                    .any(|t| t.partitions.iter().any(|p| p.group == group));
                if known && !target.is_empty() {
                    st.reassignments.insert(group, target);
                }
            }
            MetaCommand::FinishReassignment { group, replicas } => {
                if st.reassignments.get(&group) != Some(&replicas) {
                    return;
                }
                st.reassignments.remove(&group);
                st.isr.remove(&group);
                if let Some(p) = st
                    .topics
                    .values_mut()
                    .flat_map(|t| t.partitions.iter_mut())
                    .find(|p| p.group == group)
                {
                    p.replicas = replicas;
                }
            }
            MetaCommand::AddPartitions {
                name,
                from,
                replicas,
            } => {
                let Some(t) = st.topics.get_mut(&name) else {
                    return;
                };
                if t.partitions.len() != from as usize || t.is_internal() {
                    return;
                }
                for (i, replicas) in replicas.into_iter().enumerate() {
                    st.next_group += 1;
                    t.partitions.push(PartitionMeta {
                        index: from + i as i32,
                        group: GroupId(st.next_group),
                        replicas,
                        leader: None,
                    });
                }
            }
            MetaCommand::DeleteTopic { name } => {
                if let Some(t) = st.topics.remove(&name) {
                    st.topic_ids.remove(&t.id);
                    for p in &t.partitions {
                        st.reassignments.remove(&p.group);
                        st.isr.remove(&p.group);
                    }
                }
            }
            MetaCommand::AlterTopicConfigs { name, configs } => {
                if let Some(t) = st.topics.get_mut(&name) {
                    t.configs = configs;
                }
            }
            MetaCommand::AllocateProducerIds { node } => {
                let start = st.next_producer_id;
                st.next_producer_id = start.saturating_add(PRODUCER_ID_BLOCK);
                st.producer_id_blocks
                    .insert(node, (start, st.next_producer_id));
            }
            MetaCommand::IsrChanged { node, changes } => {
                for (group, term, mut isr) in changes {
                    let Some(p) = st
                        .topics
                        .values()
                        .flat_map(|t| t.partitions.iter())
                        .find(|p| p.group == group)
                    else {
                        continue;
                    };
                    if p.leader != Some((node, term)) {
                        continue;
                    }
                    isr.sort_unstable();
                    let mut all = st.replicas_shown(p);
                    all.sort_unstable();
                    if isr == all {
                        st.isr.remove(&group);
                    } else {
                        st.isr.insert(group, isr);
                    }
                }
            }
            MetaCommand::LeaderChanged { group, node, term } => {
                for t in st.topics.values_mut() {
                    for p in &mut t.partitions {
                        if p.group == group && p.leader.is_none_or(|(_, t0)| term >= t0) {
                            p.leader = Some((node, term));
                        }
                    }
                }
            }
        }
    }
}
