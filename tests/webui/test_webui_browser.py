"""``llamafactory-cli webui`` in a real browser, driven as a person would: labels, dropdowns, buttons.

Debian's chromium through Playwright for Python (no browser download). The page may reach 127.0.0.1 only:
every other request (Gradio's CDN scripts and web fonts) is aborted. Screenshots of the Train and Chat tabs
go to ``$PMT_ARTIFACTS_DIR/webui`` (default ``artifacts/webui`` in the repository).

Locally the test skips when chromium or playwright is missing; under CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PMT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PMT_ARTIFACTS_DIR", REPO / "artifacts")) / "webui"
# Playwright already starts with a fresh, empty profile; these keep chromium off the network and the GPU.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
]  # fmt: skip
# What a person types into "Extra arguments" for a CPU smoke run.
EXTRA_ARGS = {
    "optim": "adamw_torch", "max_steps": 20, "logging_steps": 1, "gradient_accumulation_steps": 1,
    "preprocessing_num_workers": 1, "dataloader_num_workers": 0, "lr_scheduler_type": "constant",
}  # fmt: skip


def _require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"chromium at {CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright for Python (pip install playwright==1.65.2)")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    """``llamafactory-cli webui`` on 127.0.0.1, in a fresh working directory (its saves/ land there)."""
    _require_browser()
    workdir = tmp_path_factory.mktemp("webui")
    port = _free_port()
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1",
        "WANDB_DISABLED": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port), "BROWSER": "true",  # BROWSER: webui's inbrowser=True opens nothing
    }  # fmt: skip
    log = (workdir / "webui.log").open("w")
    server = subprocess.Popen(
        ["llamafactory-cli", "webui"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server, workdir / "webui.log")
        yield url, workdir
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"llamafactory-cli webui exited ({server.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"llamafactory-cli webui did not answer in {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def page(webui):
    from playwright.sync_api import expect, sync_playwright

    url, _ = webui
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # assertions wait as long as actions on a loaded CI machine
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Finetuning method").first.wait_for(timeout=120_000)  # labels arrive with the page load
        yield page
        browser.close()


# --- what a person does, by visible label ---------------------------------------------------------------------


def field(page, label: str):
    """The visible input whose label starts with ``label`` (a label's text also holds its info line)."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(label)}")).filter(visible=True)


def choose(page, label: str, option: str) -> None:
    """Open a dropdown, type to filter, click the option."""
    box = field(page, label)
    box.click()
    box.fill(option)
    page.locator("ul.options li[role=option]").filter(has_text=re.compile(rf"^\W*{re.escape(option)}\W*$")).click()


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(f"number input for {label}").filter(visible=True)
    box.fill(str(value))
    box.press("Tab")


def close_toasts(page) -> None:
    """Close the visible toasts one at a time: a closed toast leaves, so the next one is always the first."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    buttons = page.locator("[data-testid=toast-close]").filter(visible=True)
    for _ in range(20):
        if buttons.count() == 0:
            break
        try:
            buttons.first.click(timeout=5_000)
        except PlaywrightTimeout:  # it faded out on its own between count() and click()
            pass
    page.wait_for_timeout(1000)  # their fade-out


def wait_for_run(page, timeout: float = 300) -> None:
    from playwright.sync_api import expect

    box = page.get_by_text(re.compile(r"^(Finished\.|Failed\.)")).filter(visible=True)
    expect(box.first).to_be_visible(timeout=timeout * 1000)
    assert box.first.inner_text().startswith("Finished."), page.locator("code").filter(visible=True).all_inner_texts()


# --- the test ----------------------------------------------------------------------------------------------------


def test_a_person_trains_and_chats_with_prefixmemory(page, webui, tiny_qwen2, toy_data):
    from playwright.sync_api import expect

    _, workdir = webui
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # Top bar: a local model, the PrefixMemory method, the model's chat template.
    choose(page, "Model name", "Custom")
    # Choosing a model resets the model path and the template, then warns of a non-instruct template: once the
    # warning shows, the reset has landed and cannot overwrite the path typed next.
    expect(page.get_by_text("non-instruct model").first).to_be_visible()
    field(page, "Model path").fill(str(tiny_qwen2))
    expect(field(page, "Model path")).to_have_value(str(tiny_qwen2))
    choose(page, "Finetuning method", "prefixmemory")
    expect(page.get_by_text("PrefixMemory configurations")).to_be_visible()
    choose(page, "Chat template", "qwen")

    # Train tab: data, a short CPU run, and the PrefixMemory settings.
    field(page, "Data dir").fill(str(toy_data))
    choose(page, "Dataset", "toy_sft")
    choose(page, "Compute type", "fp32")
    field(page, "Learning rate").fill("2e-2")
    choose(page, "Feature map", "mlp")
    expect(field(page, "Feature dim (mlp)")).to_be_editable()
    field(page, "Feature dim (mlp)").fill("16")
    field(page, "Memory layers").fill("0-1")
    page.get_by_text("Extra configurations").click()
    field(page, "Extra arguments").fill(json.dumps(EXTRA_ARGS))

    page.get_by_role("button", name="Preview command").click()
    command = page.locator("code").filter(has_text="llamafactory-cli train")
    expect(command).to_contain_text("--pmt_feature_map mlp", timeout=60_000)  # a loaded machine renders slowly
    for key in ("--finetuning_type prefixmemory", "--pmt_layers 0-1", "--pmt_feature_dim 16"):
        expect(command).to_contain_text(key)

    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text(re.compile(r"Running \d+/20"))).to_be_visible(timeout=240_000)  # the progress bar
    wait_for_run(page)
    runs = sorted((workdir / "saves" / "Custom" / "prefixmemory").iterdir())
    assert len(runs) == 1 and (runs[0] / "adapter_model.safetensors").is_file()
    config = json.loads((runs[0] / "adapter_config.json").read_text())
    assert (config["feature_map"], config["feature_dim"], config["layers"]) == ("mlp", 16, [0, 1])
    plot = page.locator("[data-testid=matplotlib] img").filter(visible=True)  # the loss plot
    expect(plot).to_have_count(1)
    close_toasts(page)
    box = plot.bounding_box()
    bottom = page.evaluate("window.scrollY") + box["y"] + box["height"] + 24
    page.screenshot(path=ARTIFACTS / "webui_train.png", full_page=True, clip=dict(x=0, y=0, width=1600, height=bottom))

    # The checkpoint dropdown lists the run; the Chat tab loads it and answers.
    choose(page, "Checkpoint path", runs[0].name)
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("button", name="Load model", exact=True).click()
    expect(page.get_by_placeholder("Input...")).to_be_visible(timeout=180_000)
    page.wait_for_function("[...document.querySelectorAll('textarea')].some(t => t.value.startsWith('Model loaded'))")
    set_number(page, "Maximum new tokens", 16)
    set_number(page, "Temperature", 0.01)
    page.get_by_placeholder("Input...").fill("Count to 3.")
    page.get_by_role("button", name="Submit", exact=True).filter(visible=True).click()
    expect(page.locator("[data-testid=user]").filter(has_text="Count to 3.")).to_be_visible()
    reply = page.locator("[data-testid=bot]").first
    expect(reply).to_have_text(re.compile(r"\S"), timeout=120_000)
    page.wait_for_timeout(1500)  # let the stream finish before the picture
    close_toasts(page)
    page.screenshot(path=ARTIFACTS / "webui_chat.png", full_page=True)
