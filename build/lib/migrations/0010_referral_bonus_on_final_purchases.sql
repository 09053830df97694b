-- The referral bonus is paid when the referred purchase is final (decision 0014, review of M2):
-- once no token it bought can be refunded any more (each revoked or expired), at its percentage
-- of what the purchase kept. A bonus paid at purchase time could be parked in refundable tokens
-- or AI holds before a refund took it back; a bonus paid on a final purchase needs no take-back.
ALTER TABLE referral_rewards ALTER COLUMN bonus_transfer_id DROP NOT NULL,
    ADD COLUMN paid_micro bigint CHECK (paid_micro >= 0 AND paid_micro <= amount_micro),
    ADD COLUMN paid_at timestamptz,
    ADD CONSTRAINT referral_rewards_paid_together CHECK ((paid_at IS NULL) = (paid_micro IS NULL));
-- Rewards paid under the earlier rule keep what they paid, net of what was taken back.
UPDATE referral_rewards SET paid_micro = amount_micro - reversed_micro - unrecovered_micro, paid_at = created_at
WHERE bonus_transfer_id IS NOT NULL;
CREATE INDEX referral_rewards_unpaid_idx ON referral_rewards (id) WHERE paid_at IS NULL;
