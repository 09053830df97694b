-- Decision 0014: a referral bonus shrinks with the refunds of the purchase that paid it.
-- reversed_micro went back to promotions; unrecovered_micro was due but the referrer had spent it.
ALTER TABLE referral_rewards
    ADD COLUMN reversed_micro bigint NOT NULL DEFAULT 0 CHECK (reversed_micro >= 0),
    ADD COLUMN unrecovered_micro bigint NOT NULL DEFAULT 0 CHECK (unrecovered_micro >= 0),
    ADD CONSTRAINT referral_rewards_reversal_bounded CHECK (reversed_micro + unrecovered_micro <= amount_micro);
CREATE INDEX referral_rewards_purchase_idx ON referral_rewards (purchase_transfer_id);
CREATE INDEX access_tokens_purchase_idx ON access_tokens (purchase_transfer_id) WHERE purchase_transfer_id IS NOT NULL;
