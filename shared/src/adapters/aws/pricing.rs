//! The AWS Price List API: On-Demand prices. It lives in us-east-1 whatever the fleet's region.

use aws_sdk_pricing::Client;
use aws_sdk_pricing::types::{Filter, FilterType};

use super::AwsError;

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

/// The hourly USD price in one Price List API `PriceList` entry (a JSON document).
fn price_from_price_list(entry: &str) -> Option<f64> {
    let product: serde_json::Value = serde_json::from_str(entry).ok()?;
    let terms = product.get("terms")?.get("OnDemand")?.as_object()?;
    terms
        .values()
        .flat_map(|term| term.get("priceDimensions").and_then(|d| d.as_object()).into_iter().flat_map(|d| d.values()))
        .find_map(|dimension| {
            let unit = dimension.get("unit")?.as_str()?;
            let usd = dimension.get("pricePerUnit")?.get("USD")?.as_str()?.parse::<f64>().ok()?;
            (unit.eq_ignore_ascii_case("hrs") && usd > 0.0).then_some(usd)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_list_answer_is_read() {
        let entry = r#"{"product":{"attributes":{"instanceType":"m5.large"}},"terms":{"OnDemand":{"ABC.JRTCKXETXF":{"priceDimensions":{"ABC.JRTCKXETXF.6YS6EN2CT7":{"unit":"Hrs","pricePerUnit":{"USD":"0.0960000000"},"description":"$0.096 per On Demand Linux m5.large Instance Hour"}}}}}}"#;
        assert_eq!(price_from_price_list(entry), Some(0.096));
        assert_eq!(price_from_price_list("{}"), None);
    }
}
