//! One call, one answer: a chat request run as a durable foreman job.
//!
//! ```sh
//! FOREMAN_URL=http://127.0.0.1:11435 cargo run -p foreman-client --example chat -- llama3.2 "Why is the sky blue?"
//! ```

use foreman_client::Client;
use foreman_client::ollama::{ChatRequest, Message};

#[tokio::main]
async fn main() -> Result<(), foreman_client::Error> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "llama3.2".into());
    let question = args.next().unwrap_or_else(|| "Why is the sky blue?".into());
    let url = std::env::var("FOREMAN_URL").unwrap_or_else(|_| "http://127.0.0.1:11435".into());

    let mut builder = Client::builder(url);
    if let Ok(token) = std::env::var("FOREMAN_TOKEN") {
        builder = builder.token(token);
    }
    let client = builder.build()?;
    let request = ChatRequest::new(model, vec![Message::user(question)]).option("temperature", 0);
    let reply = client.chat(request).await?;
    println!("{}", reply.message.content);
    Ok(())
}
