//! The AWS Price List API: On-Demand prices. It lives in us-east-1 whatever the fleet's region.

use aws_sdk_pricing::Client;
use aws_sdk_pricing::types::{Filter, FilterType};

use super::AwsError;
use crate::savings::price_from_price_list;

#[derive(Clone, Debug)]
pub struct Pricing {
    client: Client,
}

impl Pricing {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The On-Demand Linux price of an instance type in a region, if the Price List knows it.
    pub async fn on_demand_price(&self, instance_type: &str, region: &str) -> Result<Option<f64>, AwsError> {
        let filter = |field: &str, value: &str| {
            Filter::builder().r#type(FilterType::TermMatch).field(field).value(value).build().map_err(|e| AwsError {
                operation: "GetProducts",
                code: None,
                message: e.to_string(),
            })
        };
        let out = self
            .client
            .get_products()
            .service_code("AmazonEC2")
            .filters(filter("instanceType", instance_type)?)
            .filters(filter("regionCode", region)?)
            .filters(filter("operatingSystem", "Linux")?)
            .filters(filter("tenancy", "Shared")?)
            .filters(filter("preInstalledSw", "NA")?)
            .filters(filter("capacitystatus", "Used")?)
            .max_results(10)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetProducts", e))?;
        Ok(out.price_list.unwrap_or_default().iter().find_map(|entry| price_from_price_list(entry)))
    }
}
