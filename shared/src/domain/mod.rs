//! The domain: groups, their members, pools and markets. Plain data, no I/O.
//!
//! It imports nothing else of the crate, so every other module can build on it. The files split it
//! by concept; callers name everything through `crate::domain::X`, never a file's path.

pub mod deadline;
mod facts;
mod failover;
mod group;
mod ids;
mod kinds;
mod kubernetes;
mod launch;
mod ledger;
mod lookup;
mod member;
mod patch;
mod policy;
mod pool;
mod reach;
mod secret;
pub mod signature;
mod state;
mod volume;

pub use deadline::Deadline;
pub use facts::{InstanceFacts, LaunchedInstance, VolumeFacts};
pub use failover::{
    DeploymentView, FailoverCause, FailoverSpec, NodeRoom, NodeUse, ProfileLabel, RolloutStatus, WorkloadRecord,
    WorkloadRef, WorkloadState, annotations, is_namespace,
};
pub use group::{
    AddressKind, AsgSpec, DataVolume, DnsSpec, Fallback, Group, GroupKind, GroupStatus, ImageRecord, ImageStage,
    LaunchTemplateRef, NewAsg, NewStandalone, OnDemandShare, Recovery, StandaloneSpec, VolumeMove,
};
pub use ids::{
    AllocationId, DeviceName, EventId, GROUP_TAG, GroupName, InstanceId, InstanceType, MountPath, REPLACES_TAG,
    SubnetId, VolumeId, is_ec2_id,
};
pub use kinds::{AlertKind, HistoryKind};
pub use kubernetes::{
    ClusterCa, ClusterName, DrainRecord, DrainState, DrainTally, DrainTrigger, Endpoint, FargateSelector,
    KubernetesSpec, PdbPolicy, PodGrace, PodPhase, PodView, ProviderId, RebalanceAction,
};
pub use launch::{Attempt, LaunchError, LaunchErrorKind, LaunchPlan, Old};
pub use ledger::{BadDay, Day, LedgerDay, Usage};
pub use lookup::Lookup;
pub use member::{InterruptAction, Interrupted, Member, Reason, Replaced, Retiring, Role};
pub use patch::{PolicyPatch, RecoveryPatch, WindowPatch};
pub use policy::{
    BadWindow, ImagePolicy, Policy, RebalancePolicy, RecoveryPolicy, VolumePolicy, Webhook, Window, defaults,
};
pub use pool::{Market, Pool, PoolHealth, Subnet};
pub use reach::{Reach, is_private};
pub use secret::Secret;
pub use state::InstanceState;
pub use volume::{Modification, Stage, VolumeRecord};
