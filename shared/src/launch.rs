//! Launching instances: Spot first through one instant fleet over all the given pools; what Spot
//! could not place for lack of capacity goes On-Demand, marked as fallen back.

use crate::aws::AwsError;
use crate::aws::ec2::{Ec2, LaunchError, LaunchRequest, LaunchedInstance};
use crate::fleet::{LaunchTemplateRef, Market, Pool};
use crate::plan;

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

/// Launches `count` instances into the best of `pools`, Spot first; with `fallback`, what Spot
/// could not place for lack of capacity goes On-Demand.
pub async fn launch(
    ec2: &Ec2,
    template: &LaunchTemplateRef,
    pools: &[Pool],
    count: u32,
    tags: Vec<(String, String)>,
    client_token: &str,
    fallback: bool,
) -> Result<Launch, AwsError> {
    let spot = LaunchRequest {
        template,
        pools,
        count,
        market: Market::Spot,
        tags: tags.clone(),
        client_token: format!("{client_token}-spot"),
    };
    let (mut instances, mut errors) = request(ec2, &spot).await?;
    let missing = count.saturating_sub(u32::try_from(instances.len()).unwrap_or(u32::MAX));
    let mut fell_back = Vec::new();
    if fallback && missing > 0 && plan::should_fall_back(0, &errors) {
        let on_demand = LaunchRequest {
            count: missing,
            market: Market::OnDemand,
            client_token: format!("{client_token}-od"),
            ..spot
        };
        let (extra, more_errors) = request(ec2, &on_demand).await?;
        fell_back.extend(extra.iter().map(|i| i.instance_id.clone()));
        instances.extend(extra);
        errors.extend(more_errors);
    }
    Ok(Launch { instances, fell_back, errors })
}
