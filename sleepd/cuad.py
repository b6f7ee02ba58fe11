"""The CUAD v1 clause categories (The Atticus Project, CC BY 4.0; arXiv 2103.06268), in CUAD's
column order, each with what it means in plain words (a paraphrase of CUAD's description), and
what people say instead of its name (:data:`PLAIN_WORDS`).

One list for everything that names a category: the contracts profile's classifier
(:mod:`workers.enrich.clause_types`) has one rule per category here, in this order, and the query's
glossary (:mod:`sleepd.glossary`) embeds a category's meaning with a question that names it.
"""

from __future__ import annotations

__all__ = ["CLAUSE_CATEGORIES", "PLAIN_WORDS"]

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

#: CUAD category name -> what someone who owns the contracts says instead of the name ("renews
#: automatically", "rolls over"): the contract portfolio's clause index carries these beside the
#: meaning, so a question in a user's own words meets the index of the right category. Written once
#: per category, from CUAD's descriptions and everyday business English, never from a benchmark's
#: questions.
PLAIN_WORDS: dict[str, str] = {
    "Parties": "who signed, the companies or people on each side of the deal",
    "Agreement Date": "when it was signed, dated or entered into",
    "Effective Date": "when it starts, commences or comes into force",
    "Expiration Date": "when it ends, runs out or expires; how long the initial term lasts",
    "Renewal Term": "renews automatically, auto-renews, rolls over, evergreen, extends for successive periods unless "
                    "cancelled; for how long it renews",
    "Notice Period To Terminate Renewal": "how far in advance we must say we do not want it to renew or roll over; "
                                          "notice of non-renewal; opt out before the renewal date",
    "Governing Law": "which state's or country's law applies; jurisdiction and venue for disputes",
    "Most Favored Nation": "best price guarantee; prices or terms at least as good as any other customer gets",
    "Competitive Restriction Exception": "exceptions and carve-outs that still allow competing, soliciting or "
                                         "dealing with others",
    "Non-Compete": "may not compete, enter a rival business or sell competing products in a territory",
    "Exclusivity": "exclusive supplier, distributor or partner; may not buy from, sell through or work with anyone "
                   "else",
    "No-Solicit Of Customers": "may not approach, solicit or take away the other side's customers or clients",
    "No-Solicit Of Employees": "may not poach, hire or recruit the other side's employees or staff",
    "Non-Disparagement": "may not criticise, badmouth or say negative things about the other side",
    "Termination For Convenience": "may end or cancel at any time, without cause or reason, on notice",
    "Rofr/Rofo/Rofn": "first option or first chance to buy, match an offer or negotiate before anyone else",
    "Change Of Control": "when a party is acquired, merged or sold: the other may terminate or must consent",
    "Anti-Assignment": "may not transfer or assign the contract to another company without consent",
    "Revenue/Profit Sharing": "royalties, commissions, revenue share or a share of profits paid to the other side",
    "Price Restrictions": "prices are fixed or capped; limits on raising or lowering prices",
    "Minimum Commitment": "minimum purchase, order quantity, spend or volume that must be bought each period",
    "Volume Restriction": "usage limits or thresholds; extra fees or consent above a volume",
    "Ip Ownership Assignment": "who owns the work product, inventions or developments; IP transferred to the other "
                               "side",
    "Joint Ip Ownership": "inventions or intellectual property owned jointly or together by both sides",
    "License Grant": "the right to use a trademark, software, patent or technology",
    "Non-Transferable License": "the license cannot be transferred, assigned or sublicensed to others",
    "Affiliate License-Licensor": "the licensor's affiliates or group companies also license their IP",
    "Affiliate License-Licensee": "the license also covers the licensee's affiliates or group companies",
    "Unlimited/All-You-Can-Eat-License": "unlimited use, enterprise-wide or site-wide license",
    "Irrevocable Or Perpetual License": "a license forever, that cannot be revoked or taken back",
    "Source Code Escrow": "source code held by a third party and released if the vendor goes bankrupt",
    "Post-Termination Services": "what must still be done after it ends: transition help, hand-over, wind-down, "
                                 "final payments, returning materials",
    "Audit Rights": "may inspect, examine or check the other side's books, accounts, records or premises",
    "Uncapped Liability": "unlimited liability, exposure that is not limited or capped",
    "Cap On Liability": "maximum amount a party must pay for damages; liability limited or capped; no indirect or "
                        "consequential damages",
    "Liquidated Damages": "a fixed sum or penalty to pay on breach, or a fee for ending early",
    "Warranty Duration": "how long the warranty or guarantee against defects lasts",
    "Insurance": "must carry or maintain insurance coverage or policies, such as general liability",
    "Covenant Not To Sue": "promise not to sue or challenge the other side's patents, trademarks or ownership",
    "Third Party Beneficiary": "someone who is not a party can enforce or benefit from the contract",
}
if PLAIN_WORDS.keys() != CLAUSE_CATEGORIES.keys():
    raise RuntimeError("plain words for no category, or none for one: "
                       f"{sorted(PLAIN_WORDS.keys() ^ CLAUSE_CATEGORIES.keys())}")
