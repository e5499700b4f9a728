"""The official ollama Python client against ollama-sim: what passes here must pass on Ollama."""
import ollama
import pytest


@pytest.fixture()
def client(sim_url):
    return ollama.Client(host=sim_url)


def test_list_and_show(client):
    names = [m.model for m in client.list().models]
    assert "llama3.2:latest" in names
    info = client.show("llama3.2")
    assert "completion" in info.capabilities
    assert info.modelinfo["general.architecture"] == "llama"


def test_chat_non_streamed(client):
    r = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 5})
    assert r.message.role == "assistant"
    assert r.message.content
    assert r.done and r.done_reason == "length"
    assert r.eval_count == 5


def test_chat_streamed(client):
    parts = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                             stream=True, options={"num_predict": 4}))
    assert len(parts) == 5
    assert parts[-1].done
    assert "".join(p.message.content for p in parts[:-1])


def test_generate_streamed_and_not(client):
    full = client.generate(model="llama3.2", prompt="why", options={"num_predict": 3, "seed": 1})
    streamed = "".join(p.response for p in client.generate(
        model="llama3.2", prompt="why", stream=True, options={"num_predict": 3, "seed": 1}))
    assert full.response == streamed


def test_embed(client):
    r = client.embed(model="all-minilm", input=["a", "b"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 384


def test_ps_after_load(client):
    client.generate(model="llama3.2", prompt="x", options={"num_predict": 1})
    assert any(m.model == "llama3.2:latest" for m in client.ps().models)


def test_pull_progress(client):
    statuses = [p.status for p in client.pull("tinyllama", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"


def test_unknown_model_raises_response_error(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert "not found" in e.value.error
