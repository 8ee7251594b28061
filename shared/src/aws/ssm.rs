//! Systems Manager: secure parameters.

use aws_sdk_ssm::Client;

use super::AwsError;

#[derive(Clone, Debug)]
pub struct Ssm {
    client: Client,
}

impl Ssm {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The decrypted value of a (SecureString) parameter.
    pub async fn secure_parameter(&self, name: &str) -> Result<String, AwsError> {
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetParameter", e))?;
        out.parameter.and_then(|p| p.value).ok_or_else(|| AwsError::malformed("GetParameter", "the parameter value"))
    }
}
