"""The CUAD v1 clause categories (The Atticus Project, CC BY 4.0; arXiv 2103.06268), in CUAD's
column order, each with what it means in plain words (a paraphrase of CUAD's description).

One list for everything that names a category: the contracts profile's classifier
(:mod:`workers.enrich.clause_types`) has one rule per category here, in this order, and the query's
glossary (:mod:`sleepd.glossary`) embeds a category's meaning with a question that names it.
"""

from __future__ import annotations

__all__ = ["CLAUSE_CATEGORIES"]

#: CUAD category name -> its meaning in plain words (None: the name says it all)
CLAUSE_CATEGORIES: dict[str, str | None] = {
    "Parties": None,  # a plain word: a question naming it needs no meaning added
    "Agreement Date": "the date the contract was signed or dated",
    "Effective Date": "the date the contract takes effect or commences",
    "Expiration Date": "when the initial term of the contract ends or expires",
    "Renewal Term": "automatic renewal or extension of the term after the initial term expires",
    "Notice Period To Terminate Renewal": "the notice required to terminate or not renew the contract before it renews",
    "Governing Law": "which state's or country's laws govern and construe the agreement",
    "Most Favored Nation": "if a third party gets better terms or prices, the buyer is entitled to those better terms",
    "Competitive Restriction Exception": "exceptions or carve-outs to non-compete, exclusivity or non-solicitation",
    "Non-Compete": "a party may not compete with the other, or operate in a territory, business or sector",
    "Exclusivity": "exclusive dealing: buy all requirements from one party, or not sell or license to third parties",
    "No-Solicit Of Customers": "a party may not solicit or contract with the other party's customers or partners",
    "No-Solicit Of Employees": "a party may not solicit or hire the other party's employees or contractors",
    "Non-Disparagement": "a party must not disparage or criticise the other party",
    "Termination For Convenience": "a party may terminate without cause by giving notice",
    "Rofr/Rofo/Rofn": "right of first refusal, right of first offer or right of first negotiation to buy, license or "
                      "distribute",
    "Change Of Control": "termination right, consent or notice when a party undergoes a merger, acquisition, sale of "
                         "assets or change of ownership",
    "Anti-Assignment": "consent or notice is required to assign or transfer the agreement to a third party",
    "Revenue/Profit Sharing": "a party shares revenue, profit or royalties with the other",
    "Price Restrictions": "restrictions on raising or reducing prices",
    "Minimum Commitment": "a minimum order, purchase amount or number of units per period",
    "Volume Restriction": "a fee increase or consent is required if use exceeds a threshold or volume",
    "Ip Ownership Assignment": "intellectual property created by one party becomes the property of, or is assigned "
                               "to, the other",
    "Joint Ip Ownership": "joint or shared ownership of intellectual property",
    "License Grant": "one party grants the other a license to use intellectual property",
    "Non-Transferable License": "the license may not be transferred, assigned or sublicensed",
    "Affiliate License-Licensor": "a license granted by the licensor's affiliates or covering their intellectual "
                                  "property",
    "Affiliate License-Licensee": "a license granted to the licensee and its affiliates",
    "Unlimited/All-You-Can-Eat-License": "an enterprise, unlimited or all-you-can-eat usage license",
    "Irrevocable Or Perpetual License": "a license that is irrevocable or perpetual",
    "Source Code Escrow": "source code deposited with an escrow agent and released on bankruptcy or other events",
    "Post-Termination Services": "obligations after termination or expiry: transition, wind-down, payments, return of"
                                 " materials",
    "Audit Rights": "the right to audit or inspect the books, records or premises of the other party",
    "Uncapped Liability": "liability that is not limited, for example for breach of confidentiality, indemnity or "
                          "infringement",
    "Cap On Liability": "limitation of liability: a maximum amount recoverable or a time limit on claims; no "
                        "consequential damages",
    "Liquidated Damages": "liquidated damages or a termination fee payable on breach or termination",
    "Warranty Duration": "how long a warranty against defects lasts",
    "Insurance": "a party must maintain insurance coverage with minimum limits",
    "Covenant Not To Sue": "a party may not sue or contest the other's ownership or validity of intellectual property",
    "Third Party Beneficiary": "a non-party who may enforce rights under the contract; no third-party beneficiaries",
}
