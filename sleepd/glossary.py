"""Terms of art a question may name, and what they mean in plain words, for the query to embed.

A small embedding model knows "governing law" but not "ROFR" or "cap on liability" well enough to
find a clause that never uses the term. When a question names one, the query embeds the term's
meaning with it. The contract terms are the CUAD v1 clause categories (The Atticus Project,
CC BY 4.0), which the contracts profile classifies clauses into; the meanings paraphrase CUAD's
category descriptions.
"""

from __future__ import annotations

import re

__all__ = ["ALIASES", "TERMS", "expand"]

TERMS: dict[str, str] = {
    "agreement date": "the date the contract was signed or dated",
    "effective date": "the date the contract takes effect or commences",
    "expiration date": "when the initial term of the contract ends or expires",
    "renewal term": "automatic renewal or extension of the term after the initial term expires",
    "notice period to terminate renewal": "the notice required to terminate or not renew the contract before it "
                                          "renews",
    "governing law": "which state's or country's laws govern and construe the agreement",
    "most favored nation": "if a third party gets better terms or prices, the buyer is entitled to those better "
                           "terms",
    "competitive restriction exception": "exceptions or carve-outs to non-compete, exclusivity or non-solicitation",
    "non-compete": "a party may not compete with the other, or operate in a territory, business or sector",
    "exclusivity": "exclusive dealing: buy all requirements from one party, or not sell or license to third parties",
    "no-solicit of customers": "a party may not solicit or contract with the other party's customers or partners",
    "no-solicit of employees": "a party may not solicit or hire the other party's employees or contractors",
    "non-disparagement": "a party must not disparage or criticise the other party",
    "termination for convenience": "a party may terminate without cause by giving notice",
    "rofr/rofo/rofn": "right of first refusal, right of first offer or right of first negotiation to buy, license "
                      "or distribute",
    "change of control": "termination right, consent or notice when a party undergoes a merger, acquisition, sale "
                         "of assets or change of ownership",
    "anti-assignment": "consent or notice is required to assign or transfer the agreement to a third party",
    "revenue/profit sharing": "a party shares revenue, profit or royalties with the other",
    "price restrictions": "restrictions on raising or reducing prices",
    "minimum commitment": "a minimum order, purchase amount or number of units per period",
    "volume restriction": "a fee increase or consent is required if use exceeds a threshold or volume",
    "ip ownership assignment": "intellectual property created by one party becomes the property of, or is assigned "
                               "to, the other",
    "joint ip ownership": "joint or shared ownership of intellectual property",
    "license grant": "one party grants the other a license to use intellectual property",
    "non-transferable license": "the license may not be transferred, assigned or sublicensed",
    "affiliate license-licensor": "a license granted by the licensor's affiliates or covering their intellectual "
                                  "property",
    "affiliate license-licensee": "a license granted to the licensee and its affiliates",
    "unlimited/all-you-can-eat-license": "an enterprise, unlimited or all-you-can-eat usage license",
    "irrevocable or perpetual license": "a license that is irrevocable or perpetual",
    "source code escrow": "source code deposited with an escrow agent and released on bankruptcy or other events",
    "post-termination services": "obligations after termination or expiry: transition, wind-down, payments, "
                                 "return of materials",
    "audit rights": "the right to audit or inspect the books, records or premises of the other party",
    "uncapped liability": "liability that is not limited, for example for breach of confidentiality, indemnity "
                          "or infringement",
    "cap on liability": "limitation of liability: a maximum amount recoverable or a time limit on claims; no "
                        "consequential damages",
    "liquidated damages": "liquidated damages or a termination fee payable on breach or termination",
    "warranty duration": "how long a warranty against defects lasts",
    "insurance": "a party must maintain insurance coverage with minimum limits",
    "covenant not to sue": "a party may not sue or contest the other's ownership or validity of intellectual "
                           "property",
    "third party beneficiary": "a non-party who may enforce rights under the contract; no third-party "
                               "beneficiaries",
}

#: other names of the same terms
ALIASES = {"rofr": "rofr/rofo/rofn", "rofo": "rofr/rofo/rofn", "rofn": "rofr/rofo/rofn",
           "right of first refusal": "rofr/rofo/rofn", "mfn": "most favored nation",
           "most favoured nation": "most favored nation", "limitation of liability": "cap on liability",
           "non-solicitation": "no-solicit of employees", "escrow": "source code escrow",
           "auto-renewal": "renewal term", "automatic renewal": "renewal term"}
for _alias, _term in ALIASES.items():
    TERMS.setdefault(_alias, TERMS[_term])

_PATTERN = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(TERMS, key=len, reverse=True)) + r")\b", re.I)


def expand(text: str) -> str:
    """``text`` followed by the meaning of each term of art it names (longest match first), or
    ``text`` unchanged when it names none."""
    meanings = dict.fromkeys(TERMS[m.group(0).lower()] for m in _PATTERN.finditer(text))
    return f"{text} ({'; '.join(meanings)})" if meanings else text
