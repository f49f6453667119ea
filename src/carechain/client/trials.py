"""SDK for the clinical-trial registry: sign ``trials.*@1`` transactions, read the registry,
and *verify* an outcome-switching report instead of trusting it.

:meth:`TrialsClient.verify_report`:

1. fetch ``GET /v1/trials/{id}/report``;
2. for every version (and the results) the report names, prove its transaction is in the log
   of the newest trusted, signed checkpoint (:meth:`Client.prove_inclusion`: the leaf hash is
   computed locally from the envelope bytes);
3. check each envelope is what the report says: kind, trial id, a committed ``ok`` receipt;
4. rebuild the primary outcomes of every version from the signed arguments alone (an
   amendment without ``primary`` carries the previous ones over) and the reported ones from
   the results transaction;
5. recompute the switches (:func:`carechain.contracts.trials.outcome_changes`) and require
   them to equal the report's ``changes`` and ``net``; any difference is a VerificationError.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carechain.client.client import Client, InclusionResult
from carechain.client.models import Result
from carechain.contracts.trials import outcome_changes
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonObject
from carechain.errors import ValidationError, VerificationError

REGISTER = "trials.register@1"
AMEND = "trials.amend@1"
ENROL = "trials.enrol@1"
REPORT_SAE = "trials.report_sae@1"
REPORT_RESULTS = "trials.report_results@1"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedReport:
    """An outcome-switching report whose every version was proven and re-derived locally."""

    report: Mapping[str, Any]
    """The report as the node sent it (every checked field matched)."""
    proofs: tuple[InclusionResult, ...]
    """One verified inclusion proof per version, then the results (if reported)."""
    primaries: tuple[tuple[JsonObject, ...], ...]
    """Primary outcomes per version as rebuilt from the signed transactions."""
    reported: tuple[JsonObject, ...]
    """Reported primary outcomes (empty before results)."""

    @property
    def switched(self) -> bool:
        """True iff the reported (or current) primary outcomes differ from the pre-specified."""
        return bool(self.report.get("switched"))


def _outcomes(raw: object) -> tuple[JsonObject, ...]:
    if not isinstance(raw, list):
        raise VerificationError("trial report: outcomes must be a list")
    return tuple({"measure": o["measure"], "time_frame": o["time_frame"]} for o in raw)


def _key_list(keys: PrivateKey | Sequence[PrivateKey]) -> list[PrivateKey]:
    return [keys] if isinstance(keys, PrivateKey) else list(keys)


class TrialsClient:
    """Trial registry operations over a :class:`Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    # -- transactions ---------------------------------------------------------------------
    def _submit(
        self, kind: str, sender: str, args: JsonObject, keys: PrivateKey | Sequence[PrivateKey]
    ) -> Result:
        (result,) = self.client.submit(self.client.build(kind, sender, args, _key_list(keys)))
        return result

    def register(self, sender: str, key: PrivateKey, trial: JsonObject) -> Result:
        """``trials.register@1`` with ``trial`` = ``{id, title, phase, protocol, primary,
        secondary, planned_enrolment}``."""
        return self._submit(REGISTER, sender, trial, key)

    def amend(self, sender: str, key: PrivateKey, trial: str, reason: str, **fields: Any) -> Result:
        """``trials.amend@1``: a new version; ``fields`` are the registrable fields changed."""
        return self._submit(AMEND, sender, {"trial": trial, "reason": reason, **fields}, key)

    def enrol(self, sender: str, key: PrivateKey, trial: str, consent: str) -> Result:
        """``trials.enrol@1`` on the strength of research consent ``consent``."""
        return self._submit(ENROL, sender, {"trial": trial, "consent": consent}, key)

    def report_sae(
        self, sender: str, key: PrivateKey, trial: str, *, subject: int, onset: int,
        fatal: bool, category: str,
    ) -> Result:  # fmt: skip
        """``trials.report_sae@1`` (onset in Unix ms)."""
        args: JsonObject = {"trial": trial, "subject": subject, "onset": onset, "fatal": fatal,
                            "category": category}  # fmt: skip
        return self._submit(REPORT_SAE, sender, args, key)

    def report_results(
        self, sender: str, key: PrivateKey, trial: str, *, primary: list[JsonObject],
        secondary: list[JsonObject], data: str,
    ) -> Result:  # fmt: skip
        """``trials.report_results@1`` (``data``: keyed digest of the results document)."""
        args: JsonObject = {"trial": trial, "primary": primary, "secondary": secondary,
                            "data": data}  # fmt: skip
        return self._submit(REPORT_RESULTS, sender, args, key)

    # -- reads ----------------------------------------------------------------------------
    def list(self) -> list[Mapping[str, Any]]:
        """``GET /v1/trials``."""
        obj = self.client.api.get_json("/v1/trials")
        return list(obj["trials"])

    def get(self, trial: str) -> Mapping[str, Any]:
        """``GET /v1/trials/{id}``: record, versions, adverse events, results, rules."""
        return dict(self.client.api.get_json(f"/v1/trials/{_tid(trial)}"))

    def report(self, trial: str) -> Mapping[str, Any]:
        """``GET /v1/trials/{id}/report`` as sent (see :meth:`verify_report`)."""
        return dict(self.client.api.get_json(f"/v1/trials/{_tid(trial)}/report"))

    def research_study(self, trial: str) -> Mapping[str, Any]:
        """``GET /v1/trials/{id}/ResearchStudy`` (FHIR R5)."""
        return dict(self.client.api.get_json(f"/v1/trials/{_tid(trial)}/ResearchStudy"))

    def verify_report(self, trial: str) -> VerifiedReport:
        """Fetch the report and verify it (module docstring, steps 1-5)."""
        report = self.report(trial)  # step 1
        what = f"trial {trial} report"
        proofs: list[InclusionResult] = []
        primaries: list[tuple[JsonObject, ...]] = []
        reported: tuple[JsonObject, ...] = ()
        entries = report.get("proofs")
        if not isinstance(entries, list) or not entries:
            raise VerificationError(f"{what}: no proofs")
        versions = int(report.get("versions", 0))
        for i, entry in enumerate(entries):
            stage = entry.get("stage")
            proof = self.client.prove_inclusion(str(entry.get("tx_id")))  # step 2
            proofs.append(proof)
            tx = proof.tx.tx
            if proof.tx.status != "ok":  # step 3
                raise VerificationError(f"{what}: tx {tx.tx_id.hex()} was rejected")
            args = tx.body.args
            if stage == "version":
                want = REGISTER if i == 0 else AMEND
                tid = args.get("id") if i == 0 else args.get("trial")
                if tx.body.kind != want or tid != trial or entry.get("version") != i + 1:
                    raise VerificationError(f"{what}: proof {i} is not version {i + 1} ({want})")
                if "primary" in args:  # step 4
                    primaries.append(_outcomes(args["primary"]))
                elif primaries:
                    primaries.append(primaries[-1])
                else:
                    raise VerificationError(f"{what}: version 1 has no primary outcomes")
            elif stage == "results" and i == len(entries) - 1:
                if tx.body.kind != REPORT_RESULTS or args.get("trial") != trial:
                    raise VerificationError(f"{what}: the last proof is not the results")
                reported = _outcomes(args["primary"])
            else:
                raise VerificationError(f"{what}: unexpected proof entry {i} ({stage})")
        if len(primaries) != versions:
            raise VerificationError(
                f"{what}: {len(primaries)} versions proven, the report counts {versions}"
            )
        changes: list[Mapping[str, Any]] = []  # step 5
        for n, (prev, cur) in enumerate(itertools.pairwise(primaries), start=2):
            changes += [
                {**c, "stage": "amendment", "version": n} for c in outcome_changes(prev, cur)
            ]
        has_results = any(e.get("stage") == "results" for e in entries)
        if has_results:
            changes += [
                {**c, "stage": "results", "version": versions}
                for c in outcome_changes(primaries[-1], reported)
            ]
            net = outcome_changes(primaries[0], reported)
        else:
            net = outcome_changes(primaries[0], primaries[-1])
        keys = ("change", "measure", "time_frame", "from", "stage", "version")
        got = [{k: c[k] for k in keys if k in c} for c in report.get("changes", [])]
        if got != changes:
            raise VerificationError(
                f"{what}: the report's changes are not those of the signed versions: "
                f"got {got}, want {changes}"
            )
        if list(report.get("net", [])) != net or bool(report.get("switched")) != bool(net):
            raise VerificationError(f"{what}: the report's net switch is wrong: want {net}")
        return VerifiedReport(
            report=report, proofs=tuple(proofs), primaries=tuple(primaries), reported=reported
        )


def _tid(trial: str) -> str:
    if not trial or "/" in trial or len(trial) > 40:
        raise ValidationError(f"trial id: got {trial[:60]!r}")
    return trial


__all__ = ["TrialsClient", "VerifiedReport"]
