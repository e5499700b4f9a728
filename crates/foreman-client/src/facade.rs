//! The one-call facade: submit a job, wait for it, return the assembled Ollama response.
//! The job is durable on foreman the whole time; if the wait times out the error carries its
//! id, so the caller can keep waiting with [`Client::wait`].

use foreman_api::jobs::{JobKind, JobState, JobView, SubmitJob};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ollama::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse,
};
use crate::{Client, Error, Result};

impl Client {
    /// `/api/chat` as a durable job: waits up to the builder's `job_timeout`.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.run(JobKind::Chat, &request).await
    }

    /// `/api/generate` as a durable job.
    pub async fn generate(&self, request: GenerateRequest) -> Result<GenerateResponse> {
        self.run(JobKind::Generate, &request).await
    }

    /// `/api/embed` as a durable job.
    pub async fn embed(&self, request: EmbedRequest) -> Result<EmbedResponse> {
        self.run(JobKind::Embed, &request).await
    }

    /// Submits `job` and waits for it; a job that ends `failed` or `canceled` is an error.
    pub async fn submit_and_wait(&self, job: &SubmitJob) -> Result<JobView> {
        let submitted = self.submit(job).await?;
        let view = self.wait(&submitted.id, self.job_timeout).await?;
        match view.state {
            JobState::Failed => Err(Error::JobFailed {
                id: view.id.clone(),
                message: view
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no reason recorded".into()),
                job: Box::new(view),
            }),
            JobState::Canceled => Err(Error::Canceled {
                id: view.id.clone(),
                job: Box::new(view),
            }),
            _ => Ok(view),
        }
    }

    async fn run<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: JobKind,
        request: &Req,
    ) -> Result<Resp> {
        let url = self.url(&["jobs"]);
        let body = serde_json::to_value(request).map_err(|e| Error::decode(url.as_str(), e))?;
        let job = SubmitJob {
            request: body,
            kind: Some(kind),
            webhook: None,
            metadata: None,
        };
        let view = self.submit_and_wait(&job).await?;
        let result = view
            .result
            .ok_or_else(|| Error::decode(url.as_str(), "job is done but has no result"))?;
        serde_json::from_value(result).map_err(|e| Error::decode(url.as_str(), e))
    }
}
