//! `foreman status`.

use foreman_client::Client;

use super::{OpsError, Outcome, print_json, render};

pub async fn run(client: Client, json: bool) -> Result<Outcome, OpsError> {
    let status = client.status().await?;
    if json {
        print_json(&status)?;
    } else {
        print!("{}", render::status(&status));
    }
    Ok(Outcome::Success)
}
