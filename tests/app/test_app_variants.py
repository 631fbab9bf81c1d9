"""The Distill endpoint takes the loss, start, schedule and optimizer variants; callers from before them still work."""

from __future__ import annotations

import pytest
from gradio_client import Client


def test_distill_endpoint_takes_the_variants_and_old_callers_still_work(shared_app):
    url = shared_app[0]
    c = Client(url, verbose=False)
    c.predict("Schopenhauer", "smollm2-135m", True, api_name="/split")
    c.predict("bundled", [], "", 4, 2, 24, 0, api_name="/contexts")
    details = c.predict(["subword_mean", "tokdist", "tokdist_antp"], 1, 0.01, 8, -1, "ntp", 0, "auto",
                        ["hidden_mse", "logit_kl"], 1.0, "random", "linear", 0.5, "adam", api_name="/distill")[3]
    assert details["finished"] == ["subword_mean", "tokdist", "tokdist_antp"] and details["evaluated"]
    config = details["config"]
    assert config["losses"] == ["hidden_mse", "logit_kl"] and config["init"] == "random"
    assert config["schedule"] == "linear" and config["optimizer"] == "adam"
    assert config["method_losses"] == {"tokdist": ["hidden_mse", "logit_kl"],
                                       "tokdist_antp": ["hidden_mse", "logit_kl", "ntp_auto"]}
    code = c.predict("tokdist", False, api_name="/export")[2]
    assert "losses=('hidden_mse', 'logit_kl')" in code and "init='random'" in code and "schedule='linear'" in code and "optimizer='adam'" in code
    # A caller from before the variants (no trailing arguments) gets the defaults.
    config = c.predict(["tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")[3]["config"]
    assert (config["losses"], config["init"], config["schedule"], config["optimizer"]) == (
        ["hidden_mse"], "subword_mean", "constant", "lbfgs")
    for args, message in [((["ntp", "ntp_auto"], 1.0, "subword_mean", "constant", 0.5), "not both"),
                          (([], 1.0, "subword_mean", "constant", 0.5), "Tick at least one loss"),
                          ((["hidden_mse"], 1.0, "zeros", "constant", 0.5), "not in the list of choices|init must"),
                          ((["hidden_mse"], 1.0, "subword_mean", "constant", 3), "between 0 and 1"),
                          ((["hidden_mse"], 1.0, "subword_mean", "linear", 0.5, "lbfgs"), "is Adam's"),
                          ((["hidden_mse"], 1.0, "subword_mean", "constant", 0.5, "sgd"), "not in the list of choices|optimizer must")]:
        with pytest.raises(Exception, match=message):
            c.predict(["tokdist"], 1, 0.01, 8, -1, "ntp", 0, "auto", *args, api_name="/distill")
