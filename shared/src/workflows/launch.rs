//! Launching instances: Spot first through one instant fleet over all the given pools; what Spot
//! could not place for lack of capacity goes On-Demand, marked as fallen back.

use crate::adapters::aws::AwsError;
use crate::adapters::aws::ec2::{Ec2, LaunchError, LaunchRequest, LaunchedInstance};
use crate::decisions::plan;
use crate::domain::{LaunchTemplateRef, Market, Pool};

/// What a launch produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Launch {
    pub instances: Vec<LaunchedInstance>,
    /// Instances launched On-Demand because Spot had no capacity.
    pub fell_back: Vec<String>,
    /// Everything EC2 refused, Spot and On-Demand.
    pub errors: Vec<LaunchError>,
}

impl Launch {
    pub fn error_summary(&self) -> String {
        self.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
    }

    /// EC2's error codes, each once: what a caller may see (the messages can name roles and
    /// accounts, so they go to the log).
    pub fn error_codes(&self) -> String {
        let mut codes: Vec<&str> = self.errors.iter().map(|e| e.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        codes.join(", ")
    }
}

/// A capacity error can come back as an API error (HTTP 4xx) as well as inside an instant
/// fleet's 200 response: both become `LaunchError`s here.
async fn request(
    ec2: &Ec2,
    request: &LaunchRequest<'_>,
) -> Result<(Vec<LaunchedInstance>, Vec<LaunchError>), AwsError> {
    match ec2.launch(request).await {
        Ok(launched) => Ok((launched.instances, launched.errors)),
        Err(err) if err.code.as_deref().is_some_and(plan::is_capacity_error) => Ok((
            Vec::new(),
            vec![LaunchError { code: err.code.clone().unwrap_or_default(), message: err.message, pool: None }],
        )),
        Err(err) => Err(err),
    }
}

/// What to launch.
#[derive(Debug, Clone)]
pub struct Order<'a> {
    pub template: &'a LaunchTemplateRef,
    pub pools: &'a [Pool],
    pub count: u32,
    /// How many of `count` go On-Demand from the start (the group's On-Demand base).
    pub on_demand: u32,
    pub tags: Vec<(String, String)>,
    /// Makes a retried order launch nothing twice.
    pub client_token: &'a str,
    /// Launch On-Demand what Spot could not place for lack of capacity.
    pub fallback: bool,
}

/// Launches an order into the best of its pools: the On-Demand base and the Spot part at once;
/// with `fallback`, what Spot could not place for lack of capacity goes On-Demand.
pub async fn launch(ec2: &Ec2, order: &Order<'_>) -> Result<Launch, AwsError> {
    let on_demand = order.on_demand.min(order.count);
    let request = |count, market, suffix: &str| LaunchRequest {
        template: order.template,
        pools: order.pools,
        count,
        market,
        tags: order.tags.clone(),
        client_token: format!("{}-{suffix}", order.client_token),
    };
    let base = async {
        if on_demand == 0 {
            Ok((Vec::new(), Vec::new()))
        } else {
            self::request(ec2, &request(on_demand, Market::OnDemand, "base")).await
        }
    };
    let spot_count = order.count - on_demand;
    let spot = async {
        if spot_count == 0 {
            Ok((Vec::new(), Vec::new()))
        } else {
            self::request(ec2, &request(spot_count, Market::Spot, "spot")).await
        }
    };
    let ((mut instances, mut errors), (base, base_errors)) = futures::try_join!(spot, base)?;
    let missing = spot_count.saturating_sub(u32::try_from(instances.len()).unwrap_or(u32::MAX));
    let mut fell_back = Vec::new();
    if order.fallback && missing > 0 && plan::should_fall_back(0, &errors) {
        let (extra, more_errors) = self::request(ec2, &request(missing, Market::OnDemand, "od")).await?;
        fell_back.extend(extra.iter().map(|i| i.instance_id.clone()));
        instances.extend(extra);
        errors.extend(more_errors);
    }
    instances.extend(base);
    errors.extend(base_errors);
    Ok(Launch { instances, fell_back, errors })
}
