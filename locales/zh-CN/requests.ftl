# requests：本区域页面的文字。各语言的键相同。
# 申请、审批、授权、导出与借阅台（前缀 req-、flash-req-），以及共用词汇：申请类别（kind-）、
# 申请状态（state-）、授权状态（grant-state-）、借阅状态（loan-state-）。

kind-lookup = 查询
kind-view = 调阅
kind-borrow = 借阅
kind-export = 导出
kind-destroy = 销毁

state-pending = 待审批
state-approved = 已批准
state-rejected = 已驳回
state-cancelled = 已撤销
state-expired = 已过期

grant-state-active = 有效
grant-state-expired = 已过期
grant-state-revoked = 已收回
grant-state-returned = 已归还

loan-state-out = 在借
loan-state-overdue = 逾期
loan-state-returned = 已归还

req-decision-approve = 批准
req-decision-reject = 驳回

# 翻译后的提示中出现的字段名。
field-kind = 申请类别
field-duration_hours = 期限
field-comment = 意见
field-reason = 理由
field-condition = 归还状况
field-due_date = 应还日期
field-request = 申请编号

req-notice-filed = 申请已提交。
req-not-done = 未能完成：

req-col-record = 档案
req-col-kind = 类别
req-col-purpose = 用途
req-col-state = 状态
req-col-approvals = 审批
req-col-grant = 授权
req-col-when = 时间
req-col-who = 审批人
req-col-decision = 决定
req-col-comment = 意见
req-col-holder = 被授权人
req-col-valid = 有效期
req-col-borrower = 借阅人
req-col-approved-by = 批准人
req-col-grant-until = 授权截止
req-col-out-since = 借出时间
req-col-out = 借出
req-col-due = 应还日期
req-col-back = 归还

req-hours = { $hours } 小时
req-filed-at = 提交于 { $when }
req-waits-until = 等待审批至 { $when }
req-waits-for-decision-until = 等待审批至 { $when }
req-waits-until-label = 等待至
req-approvals-count = { $done } / { $needed }
req-approvals-needed = 已批准 { $done } / 需 { $needed }，由{ $role }审批
req-of-department = （{ $department }）
req-grant-until = 至 { $until }
req-grant-was-until = 原有效期至 { $until }
req-time-left = 剩余 { $left }
req-details = 详情
req-by = 经办：{ $name }

req-mine-title = 我的申请
req-mine-how-to-ask = 如需调阅，请先找到档案，在档案页面填写申请：
req-mine-empty = 您尚未提出任何申请。
req-cancel-button = 撤销申请
req-export-encrypt = 用密码加密压缩包
req-export-prepare = 准备下载
req-open-in-viewer = 在阅览器中打开 { $name }
req-no-files = 该档案没有可调阅的文件。
req-collect-at-desk = 请凭此申请编号到借阅台领取纸质档案：

req-page-title = { $kind }申请 · { $reference }
req-requested-by = 申请人
req-requester = 申请人
req-duration-asked = 申请期限
req-decisions = 审批记录
req-no-decision = 尚无审批意见。
req-your-decision = 您的审批
req-approve-comment = 意见（可选）
req-approve-button = 批准
req-reject-comment = 驳回理由（必填）
req-reject-button = 驳回
req-revoke-title = 收回授权
req-revoke-explain = 立即终止授权：阅览器、未脱敏信息、下载和借阅台自下一次访问起不再认可该授权。
req-revoke-reason = 理由（记入审计记录）
req-revoke-button = 收回

req-queue-title = 待审批
req-queue-waiting = { $count ->
    [0] 没有等待您审批的申请。
   *[other] 有 { $count } 项申请等待您审批。
}
req-queue-empty = 暂无待办。
req-kind-for-hours = { $kind }，{ $hours } 小时

req-grants-title = 有效授权
req-grants-explain = 您可见档案上正在生效的授权，最先到期的在前。收回授权立即生效：阅览器、未脱敏信息、下载和借阅台自下一次访问起不再认可。
req-grants-empty = 您可见的档案上没有生效的授权。

req-export-title = { $reference } 的导出已就绪
req-export-contents = 共 { $files } 个文件和一份清单，打包为一个压缩包。
req-export-download = 下载压缩包
req-export-link-rules = 链接仅可使用一次，于 { $until } 失效（最长 { $minutes } 分钟，且不超过授权期限）。下载将记入审计记录。
req-export-password-once = 压缩包密码（仅显示这一次）：
req-export-password-keep = 请立即记下或存入密码管理器。密码不会再次显示，系统也无法找回；没有密码将无法打开压缩包。重新准备下载会生成新密码并替换此链接。
req-export-encrypted-earlier = 压缩包已用准备下载时显示的密码加密。
req-back-to-mine = 返回我的申请

req-loans-title = 借阅台
req-loans-register = 借阅登记簿
req-loans-ready = 待出借
req-loans-hand-out = 出借
req-loans-ready-empty = 没有已批准待出借的借阅申请。
req-due-back-on = 应还日期
req-checkout-button = 出借
req-loans-by-number = 按申请编号出借
req-loans-by-number-explain = 适用于已批准的借阅申请：申请编号见借阅人的申请页面。
req-request-number = 申请编号
req-loans-out = 在借档案
req-loans-overdue-count = { $count } 件逾期
req-loans-take-back = 归还登记
req-condition = 归还状况
req-return-button = 登记归还
req-loans-out-empty = 目前没有借出的档案。
req-loans-returned = 近期归还
req-loans-returned-empty = 尚无归还记录。

req-loans-sheet-name = 借阅登记簿
req-loans-col-reference = 档号
req-loans-col-title = 题名
req-loans-col-borrower = 借阅人
req-loans-col-approved_by = 批准人
req-loans-col-checked_out_by = 出借经办人
req-loans-col-out_at = 借出时间
req-loans-col-due_date = 应还日期
req-loans-col-returned_at = 归还时间
req-loans-col-condition = 归还状况
req-loans-col-overdue = 逾期

flash-req-filed = 您对 { $reference } 的{ $kind }申请已提交。
flash-req-approved = 您已批准 { $requester } 对 { $reference } 的{ $kind }申请：已批准 { $done } / 需 { $needed }，当前状态：{ $state }。
flash-req-rejected = 您已驳回 { $requester } 对 { $reference } 的{ $kind }申请。
flash-req-cancelled = 您对 { $reference } 的{ $kind }申请已撤销。
flash-req-revoked = 已收回 { $holder } 对 { $reference } 的{ $kind }授权，立即失效。
flash-req-lent = { $reference } 已借给 { $borrower }，应于 { $due } 归还。
flash-req-returned = 已收回 { $borrower } 归还的 { $reference }，归还状况已登记。
flash-req-export-created = { $reference } 的导出已可下载。

## 借阅台上的离职人员
req-holder-left = 借阅人已离职：{ $name }
req-loans-col-holder_left = 借阅人已离职
req-cancelled-account-disabled = 因申请人账户被停用而撤销
