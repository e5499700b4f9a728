"""The official ollama and openai Python clients talk to foreman as if it were Ollama."""
import ollama
import openai
import pytest


@pytest.fixture()
def client(foreman_url):
    return ollama.Client(host=foreman_url)


@pytest.fixture()
def oai(foreman_url):
    return openai.OpenAI(base_url=f"{foreman_url}/v1", api_key="ollama")


def test_list_ps_show(client):
    assert "llama3.2:latest" in [m.model for m in client.list().models]
    client.generate(model="llama3.2", prompt="x", options={"num_predict": 1})
    assert any(m.model == "llama3.2:latest" for m in client.ps().models)
    assert "completion" in client.show("llama3.2").capabilities


def test_chat_stream_and_not(client):
    whole = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                        options={"num_predict": 5, "seed": 9})
    parts = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                             stream=True, options={"num_predict": 5, "seed": 9}))
    assert parts[-1].done
    assert "".join(p.message.content for p in parts) == whole.message.content


def test_generate_and_embed(client):
    assert client.generate(model="llama3.2", prompt="why", options={"num_predict": 3}).response
    assert len(client.embed(model="all-minilm", input="a").embeddings[0]) == 384


def test_pull_through_foreman(client):
    statuses = [p.status for p in client.pull("tinyllama", stream=True)]
    assert statuses[-1] == "success"


def test_errors_keep_ollamas_shape(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404 and "not found" in e.value.error


def test_openai_chat_stream_and_not(oai):
    r = oai.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert r.choices[0].message.content and r.usage.completion_tokens == 4
    chunks = list(oai.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 4
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_openai_models_and_embeddings(oai):
    assert any(m.id == "llama3.2:latest" for m in oai.models.list().data)
    assert len(oai.embeddings.create(model="all-minilm", input=["a", "b"]).data) == 2
