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

    /// Runs a shell script on an instance (`AWS-RunShellScript`); returns the command id.
    pub async fn run_shell(&self, instance_id: &str, comment: &str, script: &[String]) -> Result<String, AwsError> {
        let out = self
            .client
            .send_command()
            .instance_ids(instance_id)
            .document_name("AWS-RunShellScript")
            .comment(comment.chars().take(100).collect::<String>())
            .parameters("commands", script.to_vec())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SendCommand", e))?;
        out.command.and_then(|c| c.command_id).ok_or_else(|| AwsError::malformed("SendCommand", "the command id"))
    }
}
