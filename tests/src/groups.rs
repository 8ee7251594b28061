//! Groups registered through the `api` function, as the tests, the demo and the benchmarks need
//! them: one builder for a standalone group's body instead of a literal in every test, and the
//! lookups the tests make of groups and instances.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Harness, TOKEN, events, member_ids};

/// A standalone group to register. By default: the fleet's launch template by id (at the API's
/// default version), m5.large and m5a.large, both subnets, no capacity given (one member), and
/// nothing that follows the instance (no DNS, Elastic IP or data volume).
pub struct Standalone<'h> {
    h: &'h Harness,
    body: Value,
    /// Patched onto the group once it is registered (and its members running, for `online`).
    policy: Option<Value>,
}

impl Harness {
    /// A standalone group `name` to register, on the local fleet.
    pub fn standalone(&self, name: &str) -> Standalone<'_> {
        let body = json!({
            "name": name, "kind": "standalone",
            "launch_template": {"id": self.fleet.template_id},
            "instance_types": ["m5.large", "m5a.large"],
            "subnets": [self.fleet.subnet_a, self.fleet.subnet_b],
        });
        Standalone { h: self, body, policy: None }
    }

    /// A group's view, as the API answers it.
    pub async fn group(&self, name: &str) -> Value {
        let (status, group) = self.call(Method::GET, &format!("/groups/{name}"), Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{group}");
        group
    }

    /// A member of a group, as the group's view lists it (until it is closed).
    pub async fn member(&self, group: &str, instance_id: &str) -> Option<Value> {
        member_in(&self.group(group).await, instance_id).cloned()
    }

    /// Patches a group's policy through the API.
    pub async fn patch(&self, group: &str, patch: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, &format!("/groups/{group}"), Some(TOKEN), Some(patch)).await
    }

    /// An instance, as EC2 describes it.
    pub async fn instance(&self, id: &str) -> aws_sdk_ec2::types::Instance {
        let out = self.ec2().describe_instances().instance_ids(id).send().await.expect("DescribeInstances");
        out.reservations()[0].instances()[0].clone()
    }

    /// An instance's state name (`running`, `terminated`, ...).
    pub async fn ec2_state(&self, id: &str) -> String {
        self.instance(id).await.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default()
    }
}

impl Standalone<'_> {
    /// The launch template at `$Latest` (where new versions land) instead of the default version.
    pub fn latest(mut self) -> Self {
        self.body["launch_template"]["version"] = json!("$Latest");
        self
    }

    /// The launch template by its name instead of its id.
    pub fn template_by_name(mut self) -> Self {
        if let Some(template) = self.body["launch_template"].as_object_mut() {
            template.remove("id");
            template.insert("name".into(), json!(self.h.fleet.template_name));
        }
        self
    }

    pub fn types(mut self, types: &[&str]) -> Self {
        self.body["instance_types"] = json!(types);
        self
    }

    pub fn subnets(mut self, subnets: &[&str]) -> Self {
        self.body["subnets"] = json!(subnets);
        self
    }

    pub fn capacity(mut self, capacity: u32) -> Self {
        self.body["capacity"] = json!(capacity);
        self
    }

    /// The record `<name>.fleet.internal` in the fleet's zone, at the private address and the
    /// default TTL (written out, as an operator would).
    pub fn with_dns(mut self) -> Self {
        let record = format!("{}.{}", self.body["name"].as_str().unwrap_or_default(), self.h.fleet.zone_name);
        self.body["dns"] =
            json!({"hosted_zone_id": self.h.fleet.zone_id, "record_name": record, "ttl": 60, "address": "private"});
        self
    }

    /// The fleet's Elastic IP.
    pub fn with_address(mut self) -> Self {
        self.body["elastic_ip_allocation_id"] = json!(self.h.fleet.allocation_id);
        self
    }

    /// The fleet's data volume (in us-east-1b) at /dev/sdf.
    pub fn with_volume(mut self) -> Self {
        self.body["data_volumes"] = json!([{"volume_id": self.h.fleet.volume_id, "device": "/dev/sdf"}]);
        self
    }

    /// Running instances to adopt as members.
    pub fn adopting(mut self, instance_ids: &[&str]) -> Self {
        self.body["adopt"] = json!(instance_ids);
        self
    }

    /// The group's `kubernetes` block, as written.
    pub fn kubernetes(mut self, block: Value) -> Self {
        self.body["kubernetes"] = block;
        self
    }

    /// A policy patched onto the group once `register` or `online` has it registered.
    pub fn policy(mut self, patch: Value) -> Self {
        self.policy = Some(patch);
        self
    }

    /// The registration's body, for a test that sends it itself.
    pub fn body(&self) -> Value {
        self.body.clone()
    }

    /// Sends the registration and hands back the API's answer, whatever it is (no policy).
    pub async fn post(&self) -> (StatusCode, Value) {
        self.h.call(Method::POST, "/groups", Some(TOKEN), Some(self.body.clone())).await
    }

    /// Registers the group (201), patches its policy if one is given (200): the group's view as
    /// registered.
    pub async fn register(self) -> Value {
        let (status, group) = self.post().await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        self.apply_policy().await;
        group
    }

    /// Registers the group, sends each member its `running` event (each brought online), then
    /// patches its policy if one is given: the member ids.
    pub async fn online(self) -> Vec<String> {
        let (status, group) = self.post().await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        let ids = member_ids(&group);
        for id in &ids {
            let out = self.h.instance_state(events::state_change(id, "running")).await.expect("the running event");
            assert_eq!(out["action"], "brought-online", "{out}");
        }
        self.apply_policy().await;
        ids
    }

    async fn apply_policy(&self) {
        let name = self.body["name"].as_str().unwrap_or_default();
        if let Some(patch) = &self.policy {
            let (status, patched) = self.h.patch(name, patch.clone()).await;
            assert_eq!(status, StatusCode::OK, "{patched}");
        }
    }
}

/// A member of a group view (as the API answers it).
pub fn member_in<'a>(group: &'a Value, instance_id: &str) -> Option<&'a Value> {
    group["members"]
        .as_array()
        .expect("a group view lists its members")
        .iter()
        .find(|m| m["instance_id"] == instance_id)
}

/// An instance's tag.
pub fn tag<'a>(instance: &'a aws_sdk_ec2::types::Instance, key: &str) -> Option<&'a str> {
    instance.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}
