-- A call whose provider usage report never arrived is charged a conservative estimate (decision
-- 0011); its usage row says so. 'streamed' stays allowed for rows written before.
ALTER TABLE ai_usage DROP CONSTRAINT ai_usage_usage_source_check;
ALTER TABLE ai_usage ADD CONSTRAINT ai_usage_usage_source_check
    CHECK (usage_source IN ('upstream', 'estimated', 'streamed', 'none'));
