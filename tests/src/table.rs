//! Creates the fleet table from its definition in template.yaml, so the tests and the demo use
//! exactly the table that `sam deploy` creates.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use serde_yaml::Value;

use crate::emulator::workspace_root;

/// The `Properties` of the template's `FleetTable` resource.
pub fn table_definition() -> Result<Value, String> {
    let path = workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let template: Value = serde_yaml::from_str(&text).map_err(|e| format!("template.yaml: {e}"))?;
    let table = &template["Resources"]["FleetTable"];
    if table["Type"].as_str() != Some("AWS::DynamoDB::Table") {
        return Err("template.yaml has no FleetTable of type AWS::DynamoDB::Table".into());
    }
    Ok(table["Properties"].clone())
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v[key].as_str().ok_or_else(|| format!("FleetTable: {key} is missing or not a string"))
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>, String> {
    v.as_sequence()
        .ok_or("FleetTable: KeySchema is not a list")?
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(str_of(k, "AttributeName")?)
                .key_type(KeyType::from(str_of(k, "KeyType")?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Creates the table (and its TTL setting) under `name`, as template.yaml defines it.
pub async fn create_table(client: &Client, name: &str) -> Result<(), String> {
    let props = table_definition()?;
    let attributes = props["AttributeDefinitions"]
        .as_sequence()
        .ok_or("FleetTable: AttributeDefinitions is not a list")?
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(str_of(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(str_of(a, "AttributeType")?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut indexes = Vec::new();
    for index in props["GlobalSecondaryIndexes"].as_sequence().into_iter().flatten() {
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(str_of(index, "IndexName")?)
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(str_of(&index["Projection"], "ProjectionType")?))
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(str_of(&props, "BillingMode")?))
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&props["KeySchema"])?))
        .set_global_secondary_indexes(if indexes.is_empty() { None } else { Some(indexes) })
        .send()
        .await
        .map_err(|e| format!("CreateTable: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))?;
    let ttl = &props["TimeToLiveSpecification"];
    if ttl["Enabled"].as_bool() == Some(true) {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(str_of(ttl, "AttributeName")?)
                    .enabled(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map_err(|e| format!("UpdateTimeToLive: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))?;
    }
    Ok(())
}
